"""Leadership of a region's scheduler servers, decided by an election in the shared
store, and the servers' membership rows.

A server campaigns for as long as it runs: while it holds leadership it runs the
leader's loops; when its lease lapses (it stalled, or lost the store) it steps down at
once and campaigns again. Every server also follows who leads, so that requests only
the leader may serve can be sent there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from steppe._tasks import cancel_all
from steppe.backend import Backend, Election, Put, keep_alive
from steppe.errors import BackendError, SteppeError
from steppe.rpc import LeaderClient, RPCClient
from steppe.server import FollowerWorkers, Server
from steppe.state import Keys
from steppe.structs import ServerMember, to_msgpack

log = logging.getLogger(__name__)
LEADER_TTL = 2.0
MEMBER_TTL = 3.0
WHILE_LEADING_EVERY = 2.0


def _leader_value(server: Server) -> str:
    info = server.info
    return json.dumps({"name": info.name, "rpc": info.rpc_addr, "http": info.http_addr})


class Leadership:
    def __init__(
        self,
        server: Server,
        backend: Backend,
        member: ServerMember,
        workers: int = 2,
        while_leading: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``while_leading``: called every ``WHILE_LEADING_EVERY`` seconds while this
        server leads (errors are logged, never fatal)."""
        self.server = server
        self._while_leading = while_leading
        self.backend = backend
        self.member = member
        self.leader_http: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._leader_client: tuple[str, LeaderClient] | None = None
        self._closing: set[asyncio.Future[None]] = set()
        self.followers = FollowerWorkers(server.store, self._leader_api, count=workers)

    def _leader_api(self) -> LeaderClient | None:
        """The current leader's broker and applier, while this server is a follower."""
        addr = self.server.leader_addr
        if self.server.is_leader or not addr:
            return None
        if self._leader_client is None or self._leader_client[0] != addr:
            if self._leader_client is not None:
                closing = asyncio.ensure_future(self._leader_client[1].client.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self._leader_client = (addr, LeaderClient(RPCClient(addr)))
        return self._leader_client[1]

    def start(self) -> None:
        self.followers.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._campaign_forever()),
            loop.create_task(self._follow_leader()),
            loop.create_task(self._stay_registered()),
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        await self.followers.stop()
        if self._leader_client is not None:
            await self._leader_client[1].client.close()
        await self.server.stop_leading()

    def _election(self) -> Election:
        return Election(self.backend, f"region-{self.server.info.region}", ttl=LEADER_TTL)

    async def _campaign_forever(self) -> None:
        while True:
            election = self._election()
            try:
                await election.campaign(_leader_value(self.server))
                await self.server.start_leading(election.fence)
                duties = asyncio.ensure_future(self._while_leading_loop())
                try:
                    await election.wait_lost()
                finally:
                    await cancel_all([duties])
                log.warning("%s: leadership lost", self.server.info.name)
            except BackendError as exc:
                log.warning("%s: campaign failed: %s", self.server.info.name, exc)
                await asyncio.sleep(0.5)
            finally:
                await self.server.stop_leading(None)
                await election.resign()

    async def _while_leading_loop(self) -> None:
        duty = self._while_leading
        while duty is not None:
            try:
                await duty()
            except (BackendError, SteppeError, OSError) as exc:
                log.info("%s: while leading: %s", self.server.info.name, exc)
            await asyncio.sleep(WHILE_LEADING_EVERY)

    async def _follow_leader(self) -> None:
        while True:
            try:
                async for value in self._election().observe():
                    leader = json.loads(value) if value else None
                    rpc = leader["rpc"] if leader else None
                    self.leader_http = leader["http"] if leader else None
                    if not self.server.is_leader:
                        self.server.leader_addr = rpc
            except BackendError as exc:
                log.info("following the leader: %s; retrying", exc)
                await asyncio.sleep(0.5)

    async def _stay_registered(self) -> None:
        """Keeps this server's row in the servers table under a lease."""
        key = Keys(self.server.store.root).root + "servers/" + self.member.name
        while True:
            try:
                lease = await self.backend.lease_grant(MEMBER_TTL)
                await self.backend.txn([], [Put(key, to_msgpack(self.member), lease)])
                await keep_alive(self.backend, lease, MEMBER_TTL)
            except BackendError as exc:
                log.info("server registration: %s; retrying", exc)
            await asyncio.sleep(0.5)
