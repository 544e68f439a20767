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
from steppe.scheduler import SchedulerResult, evaluate_plan, process_async
from steppe.server._broker import EvalBroker
from steppe.server._endpoints import Endpoints
from steppe.server._heartbeats import HeartbeatPolicy, HeartbeatTimers
from steppe.server._periodic import PeriodicDispatcher
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
        self._plan_lock = asyncio.Lock()
        self._blocked: dict[str, Evaluation] = {}
        self._deliveries: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Takes over: restores heartbeat deadlines and the eval queue from state."""
        snap = self.store.snapshot()
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
        """Re-checks a plan against the newest state and commits what still fits.

        Serialised on the leader; and each node's share is committed with a compare on
        that node's usage revision, so even a second (stale) leader cannot overfill it.
        """
        async with self._plan_lock:
            snap = self.store.snapshot()
            result = evaluate_plan(snap, plan)
            revisions = {
                n: snap.node_usage_revision(n)
                for n in (*result.node_update, *result.node_allocation)
            }
            rejected: set[str] = set()
            max_ops = self.store.backend.max_txn_ops
            for nodes, txn in writes.apply_plan(self.keys, result, revisions, max_ops):
                if await self.store.try_commit(txn) is None:
                    rejected.update(nodes)
            if rejected:
                result = msgspec.structs.replace(
                    result,
                    node_update={k: v for k, v in result.node_update.items() if k not in rejected},
                    node_allocation={
                        k: v for k, v in result.node_allocation.items() if k not in rejected
                    },
                    refresh_index=self.store.revision,
                )
            if result.fully_committed(plan):
                return result, None
            return result, self.store.snapshot()

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
