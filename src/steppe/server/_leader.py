"""What only the leader runs: the eval broker and its feed, the plan applier, the
scheduler workers, and node heartbeat timers.

Everything the leader knows it rebuilds from state when it takes over, so losing a
leader loses no work: pending evaluations are still in state, and nodes get a
generous first deadline (``failover_ttl``) to find the new leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec

from steppe._tasks import cancel_all
from steppe.backend import Compare
from steppe.scheduler import SchedulerResult, process_async
from steppe.server._broker import EvalBroker
from steppe.server._endpoints import Endpoints
from steppe.server._heartbeats import HeartbeatPolicy, HeartbeatTimers
from steppe.server._periodic import PeriodicDispatcher
from steppe.server._plan_applier import PlanApplier
from steppe.state import Keys, StateSnapshot, StateStore, writes
from steppe.structs import (
    EVAL_BLOCKED,
    EVAL_FAILED,
    EVAL_PENDING,
    NODE_STATUS_DOWN,
    Evaluation,
    Plan,
    PlanResult,
)

log = logging.getLogger(__name__)
SCHEDULER_TYPES = frozenset({"service", "batch", "system", "sysbatch"})
MAX_EVAL_DELIVERIES = 3


class Leader:
    def __init__(
        self,
        store: StateStore,
        endpoints: Endpoints,
        *,
        workers: int = 2,
        heartbeat_policy: HeartbeatPolicy | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.keys = Keys(store.root)
        self.endpoints = endpoints
        self.broker = EvalBroker(monotonic)
        self.heartbeats = HeartbeatTimers(heartbeat_policy or HeartbeatPolicy(), monotonic)
        self._clock = clock
        self.periodic = PeriodicDispatcher(store, endpoints, clock)
        self._workers = workers
        self.plans = PlanApplier(store)
        self._blocked: dict[str, Evaluation] = {}
        self._deliveries: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle -----------------------------------------------------------------------
    async def start(self, fence: Compare | None = None) -> None:
        """Takes over: restores heartbeat deadlines and the eval queue from state.

        First the cache catches up with the store's current revision, which includes
        every plan the previous leader committed: the plan applier checks new plans
        against it."""
        snap = await self.store.consistent_snapshot()
        self.plans.fence = fence
        for node in snap.nodes():
            if node.status != NODE_STATUS_DOWN:
                self.heartbeats.reset(node.id, self.heartbeats.policy.failover_ttl)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._feed_broker()),
            loop.create_task(self._unblock_on_capacity()),
            loop.create_task(self._expire_heartbeats()),
        ]
        self._tasks += [loop.create_task(self._work()) for _ in range(self._workers)]
        await self.periodic.start()

    async def stop(self) -> None:
        await self.periodic.stop()
        await cancel_all(self._tasks)
        await self.plans.stop()
        self._tasks = []
        self.broker.clear()
        self.heartbeats.clear()
        self._blocked.clear()

    # the broker's feed ---------------------------------------------------------------
    async def _feed_broker(self) -> None:
        seen = 0
        while True:
            snap = await self.store.block(["evals"], seen, timeout=30)
            newest = snap.table_index("evals")
            for ev in snap.evals():
                if ev.modify_index <= seen:
                    continue
                if ev.status == EVAL_PENDING:
                    await self.broker.enqueue(ev, self._wait_until(ev))
                elif ev.status == EVAL_BLOCKED:
                    self._blocked[ev.id] = ev
            seen = newest

    def _wait_until(self, ev: Evaluation) -> float:
        """An eval's WaitUntil (wall clock, ns) on the broker's monotonic clock."""
        if not ev.wait_until:
            return 0.0
        delay = ev.wait_until / 1e9 - self._clock()
        return time.monotonic() + max(0.0, delay)

    async def _unblock_on_capacity(self) -> None:
        snap = self.store.snapshot()
        seen = snap.table_index("nodes", "node_usage")
        while True:
            snap = await self.store.block(["nodes", "node_usage"], seen, timeout=30)
            seen = snap.table_index("nodes", "node_usage")
            blocked, self._blocked = self._blocked, {}
            for ev in blocked.values():
                current = snap.eval(ev.id)
                if current is not None and current.status == EVAL_BLOCKED:
                    await self.broker.enqueue(current)

    # heartbeats ----------------------------------------------------------------------
    def heartbeat(self, node_id: str) -> float:
        return self.heartbeats.reset(node_id)

    async def _expire_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            for node_id in self.heartbeats.expired():
                log.warning("node %s missed its heartbeat deadline: marking it down", node_id)
                await self.endpoints.mark_node_down(node_id, "node heartbeat missed")

    # the plan applier ----------------------------------------------------------------
    async def apply_plan(self, plan: Plan) -> tuple[PlanResult, StateSnapshot | None]:
        """Re-checks a plan against the newest state and commits what still fits."""
        return await self.plans.apply(plan)

    # workers -------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            ev = await self.broker.dequeue(SCHEDULER_TYPES, timeout=5.0)
            if ev is None:
                continue
            try:
                await self.store.wait_for_revision(ev.modify_index, timeout=10)
                result = await self._schedule(ev)
                await self.store.commit(
                    writes.upsert_evals(self.keys, [result.eval, *result.new_evals])
                )
                self._deliveries.pop(ev.id, None)
                await self.broker.ack(ev)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("scheduling eval %s failed", ev.id)
                await self._failed_delivery(ev, exc)

    async def _failed_delivery(self, ev: Evaluation, exc: Exception) -> None:
        count = self._deliveries.get(ev.id, 0) + 1
        self._deliveries[ev.id] = count
        if count < MAX_EVAL_DELIVERIES:
            await self.broker.nack(ev)
            return
        self._deliveries.pop(ev.id, None)
        failed = msgspec.structs.replace(
            ev, status=EVAL_FAILED, status_description=f"scheduler failed: {exc}"
        )
        with contextlib.suppress(Exception):
            await self.store.commit(writes.upsert_evals(self.keys, [failed]))
        await self.broker.ack(ev)

    async def _schedule(self, ev: Evaluation) -> SchedulerResult:
        snap = self.store.snapshot()
        now = int(self._clock() * 1e9)
        return await process_async(snap, ev, now, self.apply_plan)
