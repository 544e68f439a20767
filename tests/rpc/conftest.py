"""Real scheduler servers over one shared in-memory backend, each serving RPC on a
loopback port the OS picks; everything started here is stopped at teardown."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from steppe.backend import MemoryBackend
from steppe.rpc import RPCServer, ServerEndpoint
from steppe.server import HeartbeatPolicy, Server, ServerInfo
from steppe.state import SCHEDULER_TABLES, StateStore


@dataclasses.dataclass
class Member:
    server: Server
    store: StateStore
    rpc: RPCServer

    @property
    def address(self) -> str:
        return self.rpc.address


MakeMember = Callable[..., Awaitable[Member]]


@pytest.fixture
async def backend() -> AsyncIterator[MemoryBackend]:
    backend = MemoryBackend(lease_check_interval=None)
    yield backend
    await backend.close()


@pytest.fixture
async def make_member(backend: MemoryBackend) -> AsyncIterator[MakeMember]:
    members: list[Member] = []

    async def make(name: str, *, leader: bool = True, peers: list[str] | None = None) -> Member:
        store = StateStore(backend, SCHEDULER_TABLES)
        await store.start()
        info = ServerInfo(name, "global", "dc1", "127.0.0.1:0", "127.0.0.1:0")
        server = Server(store, info, heartbeat_policy=HeartbeatPolicy(min_ttl=5, grace=1))
        endpoint = ServerEndpoint(
            server, peers=(lambda: list(peers)) if peers is not None else None
        )
        rpc = RPCServer(endpoint, "127.0.0.1", 0)
        member = Member(server, store, rpc)
        members.append(member)
        await rpc.start()
        server.info = dataclasses.replace(info, rpc_addr=rpc.address)
        if leader:
            await server.start_leading()
        return member

    try:
        yield make
    finally:
        for member in reversed(members):
            await member.rpc.stop()
            await member.server.stop()
            await member.store.stop()


@pytest.fixture
async def leader(make_member: MakeMember) -> Member:
    return await make_member("s1")
