"""A scheduler server: endpoints every server serves, plus the leader's loops
while this server holds leadership.

``Server`` also implements the client's ``ServerAPI`` directly, which is how the
client half of ``agent -dev`` talks to the server half in the same process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from steppe.backend import Compare
from steppe.errors import NotFoundError, NotLeaderError
from steppe.server._endpoints import Endpoints
from steppe.server._heartbeats import HeartbeatPolicy
from steppe.server._leader import Leader
from steppe.server._preview import preview_plan
from steppe.state import StateStore
from steppe.structs import NODE_STATUS_DOWN, Allocation, Evaluation, Job, Node, Plan, PlanResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    """Who this server is, as ``/v1/status`` and ``server members`` report it."""

    name: str
    region: str
    datacenter: str
    rpc_addr: str
    http_addr: str
    tags: dict[str, str] = field(default_factory=dict)


class Server:
    def __init__(
        self,
        store: StateStore,
        info: ServerInfo,
        *,
        workers: int = 2,
        heartbeat_policy: HeartbeatPolicy | None = None,
        clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.store = store
        self.info = info
        self.endpoints = Endpoints(store, info.region, clock, id_factory)
        self.leader = Leader(
            store,
            self.endpoints,
            workers=workers,
            heartbeat_policy=heartbeat_policy,
            clock=clock,
        )
        self._is_leader = False
        self.leader_addr: str | None = None

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    async def start_leading(self, fence: Compare | None = None) -> None:
        """``fence``: what the leader's writes of allocations must carry so they commit
        only while it leads (None when no other server could lead, as in ``-dev``)."""
        if not self._is_leader:
            log.info("%s is now the leader of region %s", self.info.name, self.info.region)
            self._is_leader = True
            self.leader_addr = self.info.rpc_addr
            await self.leader.start(fence)

    async def stop_leading(self, new_leader: str | None = None) -> None:
        if self._is_leader:
            log.info("%s lost leadership", self.info.name)
            self._is_leader = False
            await self.leader.stop()
        self.leader_addr = new_leader

    async def stop(self) -> None:
        await self.stop_leading()

    def _require_leader(self) -> Leader:
        if not self._is_leader:
            raise NotLeaderError(self.leader_addr)
        return self.leader

    async def preview_plan(self, job: Job) -> dict[str, Any]:
        return preview_plan(self.store.snapshot(), job, int(time.time() * 1e9))

    # what followers' workers ask of the leader -------------------------------------------
    async def eval_dequeue(self, types: list[str], timeout: float) -> tuple[Evaluation | None, int]:
        """An evaluation, and the revision the worker's state must reach before scheduling
        it: everything this leader had committed when it handed the evaluation out,
        including the plans of earlier evaluations of the same job."""
        ev = await self._require_leader().broker.dequeue(frozenset(types), timeout)
        return ev, self.store.revision

    async def eval_ack(self, ev: Evaluation) -> None:
        await self._require_leader().broker.ack(ev)

    async def eval_nack(self, ev: Evaluation) -> None:
        await self._require_leader().broker.nack(ev)

    async def plan_submit(self, plan: Plan) -> PlanResult:
        result, _ = await self._require_leader().apply_plan(plan)
        return result

    # the client's ServerAPI ----------------------------------------------------------
    async def register_node(self, node: Node) -> float:
        leader = self._require_leader()
        await self.endpoints.register_node(node)
        return leader.heartbeat(node.id)

    async def heartbeat(self, node_id: str) -> float:
        leader = self._require_leader()
        node = self.store.snapshot().node(node_id)
        if node is None:
            raise NotFoundError(f"node not found: {node_id}")
        if node.status == NODE_STATUS_DOWN:
            await self.endpoints.register_node(node)
        return leader.heartbeat(node_id)

    async def node_allocations(
        self, node_id: str, min_index: int, timeout: float
    ) -> tuple[list[Allocation], int]:
        snap = await self.store.block(["allocs"], min_index, timeout)
        allocs = [snap.alloc_with_job(a) for a in snap.allocs_by_node(node_id)]
        return allocs, snap.table_index("allocs")

    async def update_allocs(self, allocs: list[Allocation]) -> None:
        await self.endpoints.update_allocs_from_client(allocs)

    async def deregister_node(self, node_id: str) -> None:
        self.leader.heartbeats.forget(node_id)
        await self.endpoints.mark_node_down(node_id, "node left the cluster")
