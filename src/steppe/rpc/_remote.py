"""The client agent's view of the servers: ``ServerAPI`` over RPC, with failover.

Any server answers reads and client writes (they share the replicated state), so
those go to the current server and move on to the next one when it stops answering.
Registration and heartbeats need the leader (it owns the heartbeat timers): they go
to the last known leader, and a ``not_leader`` answer naming another server is
followed there. Nothing here sleeps or retries forever; the client's own loops own
backoff, and see one clear error when no server could answer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from steppe.rpc._client import RPCClient, parse_address
from steppe.rpc._endpoint import (
    DEREGISTER_NODE,
    HEARTBEAT,
    NODE_ALLOCATIONS,
    PEERS,
    PING,
    REGISTER_NODE,
    STATUS_LEADER,
    UPDATE_ALLOCS,
)
from steppe.rpc._method import Method
from steppe.rpc._wire import ProtocolError, UnreachableError
from steppe.server import NotLeaderError
from steppe.structs import Allocation, Node

log = logging.getLogger(__name__)
R = TypeVar("R")
_FAILOVER_ERRORS = (UnreachableError, ProtocolError)


class RemoteServerAPI:
    """``servers`` are RPC addresses (``host:port``); the list may start empty and be
    filled later with :meth:`set_servers` (config, ``server join``, catalog auto-join)
    or :meth:`refresh_servers` (ask a server for its peers).

    ``call_timeout`` bounds every call except blocking queries, whose deadline is the
    query's own timeout plus ``block_margin`` (and a sixteenth of the timeout, as the
    server may add jitter), so a healthy long poll never looks like a dead server.
    """

    def __init__(
        self,
        servers: Sequence[str] = (),
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        call_timeout: float = 10.0,
        connect_timeout: float = 2.0,
        block_margin: float = 5.0,
        max_redirects: int = 3,
        client_factory: Callable[[str], RPCClient] | None = None,
    ) -> None:
        self.call_timeout = call_timeout
        self.block_margin = block_margin
        self.max_redirects = max_redirects
        self._factory = client_factory or (
            lambda addr: RPCClient(
                addr,
                ssl=ssl,
                server_hostname=server_hostname,
                timeout=call_timeout,
                connect_timeout=connect_timeout,
            )
        )
        self._servers: list[str] = []
        self._current = 0
        self._leader: str | None = None
        self._clients: dict[str, RPCClient] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.set_servers(servers)

    # the server list -----------------------------------------------------------------
    @property
    def known_servers(self) -> list[str]:
        return list(self._servers)

    @property
    def leader(self) -> str | None:
        """The leader's address as last learnt, None when unknown."""
        return self._leader

    def set_servers(self, servers: Sequence[str]) -> None:
        """Replaces the list, keeping the current server first if it is still listed;
        connections to servers no longer listed are closed."""
        new = list(dict.fromkeys(servers))
        for addr in new:
            parse_address(addr)
        current = self._servers[self._current] if self._servers else None
        self._servers = new
        self._current = new.index(current) if current in new else 0
        for addr in list(self._clients):
            if addr not in new and addr != self._leader:
                self._retire(addr)

    async def refresh_servers(self) -> list[str]:
        """Learns the region's servers from whichever server answers."""
        peers = await self._call_any(PEERS, (), self.call_timeout)
        if peers:
            self.set_servers(peers)
        return self.known_servers

    def _retire(self, addr: str) -> None:
        client = self._clients.pop(addr)
        try:
            task = asyncio.get_running_loop().create_task(client.close())
        except RuntimeError:  # no loop: nothing was ever connected from this one
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _client(self, addr: str) -> RPCClient:
        client = self._clients.get(addr)
        if client is None:
            client = self._clients[addr] = self._factory(addr)
        return client

    def _rotation(self) -> list[str]:
        n = len(self._servers)
        return [self._servers[(self._current + i) % n] for i in range(n)]

    # calls ---------------------------------------------------------------------------
    async def _call_any(self, method: Method[R], args: tuple[Any, ...], timeout: float) -> R:
        errors: list[str] = []
        for addr in self._rotation():
            try:
                result = await self._client(addr).call(method, *args, timeout=timeout)
            except _FAILOVER_ERRORS as exc:
                log.warning("server %s did not answer %s: %s", addr, method.name, exc)
                errors.append(str(exc))
                continue
            if addr in self._servers:
                self._current = self._servers.index(addr)
            return result
        raise self._unreachable(method, errors)

    async def _call_leader(self, method: Method[R], args: tuple[Any, ...]) -> R:
        pending = deque(self._rotation())
        if self._leader is not None:
            pending.appendleft(self._leader)
        tried: set[str] = set()
        errors: list[str] = []
        not_leader: NotLeaderError | None = None
        redirects = 0
        while pending:
            addr = pending.popleft()
            if addr in tried:
                continue
            tried.add(addr)
            try:
                result = await self._client(addr).call(method, *args, timeout=self.call_timeout)
            except NotLeaderError as exc:
                not_leader = exc
                if exc.leader and exc.leader not in tried and redirects < self.max_redirects:
                    redirects += 1
                    pending.appendleft(exc.leader)
                continue
            except _FAILOVER_ERRORS as exc:
                log.warning("server %s did not answer %s: %s", addr, method.name, exc)
                errors.append(str(exc))
                if addr == self._leader:
                    self._leader = None
                continue
            self._leader = addr
            return result
        if not_leader is not None:
            self._leader = None
            raise not_leader
        raise self._unreachable(method, errors)

    def _unreachable(self, method: Method[Any], errors: list[str]) -> UnreachableError:
        if not errors:
            return UnreachableError(f"{method.name}: no scheduler servers known")
        return UnreachableError(f"{method.name}: no server answered ({'; '.join(errors)})")

    # ServerAPI -----------------------------------------------------------------------
    async def register_node(self, node: Node) -> float:
        return await self._call_leader(REGISTER_NODE, (node,))

    async def heartbeat(self, node_id: str) -> float:
        return await self._call_leader(HEARTBEAT, (node_id,))

    async def node_allocations(
        self, node_id: str, min_index: int, timeout: float
    ) -> tuple[list[Allocation], int]:
        deadline = timeout + timeout / 16 + self.block_margin
        return await self._call_any(NODE_ALLOCATIONS, (node_id, min_index, timeout), deadline)

    async def update_allocs(self, allocs: list[Allocation]) -> None:
        await self._call_any(UPDATE_ALLOCS, (allocs,), self.call_timeout)

    async def deregister_node(self, node_id: str) -> None:
        await self._call_leader(DEREGISTER_NODE, (node_id,))

    # status --------------------------------------------------------------------------
    async def ping(self) -> str:
        """The name of whichever server answered."""
        return await self._call_any(PING, (), self.call_timeout)

    async def status_leader(self) -> str:
        return await self._call_any(STATUS_LEADER, (), self.call_timeout)

    async def peers(self) -> list[str]:
        return await self._call_any(PEERS, (), self.call_timeout)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), *self._closing)
