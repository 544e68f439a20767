"""Scheduler workers on followers.

Evaluations come from the leader's broker and plans go to the leader's applier (over
RPC, through :class:`LeaderAPI`); the scheduling itself reads this server's own copy of
the state. So the region schedules with every server's CPU while the leader alone
decides what commits, as in Nomad.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from steppe._tasks import cancel_all
from steppe.errors import SteppeError
from steppe.scheduler import SchedulerResult, process_async
from steppe.state import Keys, StateSnapshot, StateStore, writes
from steppe.structs import Evaluation, Plan, PlanResult

log = logging.getLogger(__name__)
DEQUEUE_WAIT = 5.0
RETRY_PAUSE = 1.0


class LeaderAPI(Protocol):
    """What a follower's worker asks of the leader."""

    async def eval_dequeue(
        self, types: list[str], timeout: float
    ) -> tuple[Evaluation | None, int]: ...

    async def eval_ack(self, ev: Evaluation) -> None: ...

    async def eval_nack(self, ev: Evaluation) -> None: ...

    async def plan_submit(self, plan: Plan) -> PlanResult: ...


class FollowerWorkers:
    def __init__(
        self,
        store: StateStore,
        leader: Callable[[], LeaderAPI | None],
        *,
        count: int = 2,
        types: frozenset[str] = frozenset({"service", "batch", "system", "sysbatch"}),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keys = Keys(store.root)
        self._leader = leader
        self._count = count
        self._types = sorted(types)
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self.processed = 0

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._work()) for _ in range(self._count)]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)

    async def _work(self) -> None:
        while True:
            leader = self._leader()
            if leader is None:
                await asyncio.sleep(RETRY_PAUSE)
                continue
            try:
                ev, wait_index = await leader.eval_dequeue(self._types, DEQUEUE_WAIT)
            except SteppeError as exc:
                log.debug("follower worker: no evaluations from the leader: %s", exc)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            if ev is None:
                continue
            try:
                await self._process(leader, ev, max(ev.modify_index, wait_index))
                await leader.eval_ack(ev)
                self.processed += 1
            except asyncio.CancelledError:
                with contextlib.suppress(SteppeError):
                    await leader.eval_nack(ev)
                raise
            except SteppeError as exc:
                log.warning("follower worker: eval %s failed here: %s", ev.id, exc)
                with contextlib.suppress(SteppeError):
                    await leader.eval_nack(ev)

    async def _process(self, leader: LeaderAPI, ev: Evaluation, wait_index: int) -> None:
        """Schedules only on state at least as new as the leader's when it handed the
        evaluation out; an older copy might miss the previous evaluation's allocations
        and place them again."""
        if not await self.store.wait_for_revision(wait_index, timeout=10):
            raise SteppeError(f"state did not reach the leader's index {wait_index}")

        async def submit(plan: Plan) -> tuple[PlanResult, StateSnapshot | None]:
            result = await leader.plan_submit(plan)
            if result.fully_committed(plan):
                return result, None
            # refresh_index alone may predate what this plan did commit: planning again
            # on such a copy would place those allocations a second time
            refresh = max(result.refresh_index, result.alloc_index)
            await self.store.wait_for_revision(refresh, timeout=10)
            return result, self.store.snapshot()

        now = int(self._clock() * 1e9)
        result: SchedulerResult = await process_async(self.store.snapshot(), ev, now, submit)
        await self.store.commit(writes.upsert_evals(self.keys, [result.eval, *result.new_evals]))
