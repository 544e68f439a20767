"""Entry points: one pass (:func:`schedule`) and the submit-and-retry loop
(:func:`process`, :func:`process_async`).

A pass reads one snapshot and returns a plan; it does not submit anything. The loop
hands the plan to ``submit`` (the leader's plan applier, or the test harness), and if
only part of it was committed, plans again on the newer state it got back, like
Nomad's worker. Progress resets the attempt budget; without progress the evaluation
fails after ``max_attempts`` and a blocked evaluation keeps the remaining work.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import msgspec

from steppe.scheduler._generic import schedule_generic
from steppe.scheduler._outcome import finish_eval
from steppe.scheduler._protocols import IdFactory, SchedulerResult, State, SubmitResult, new_id
from steppe.scheduler._system import schedule_system
from steppe.structs import EVAL_FAILED, Evaluation, Plan, PlanResult

MAX_SERVICE_ATTEMPTS = 5
MAX_BATCH_ATTEMPTS = 2


def schedule(state: State, ev: Evaluation, now: int, ids: IdFactory = new_id) -> SchedulerResult:
    """One scheduling pass over ``state`` for ``ev``; ``now`` is Unix time in ns."""
    job = state.job(ev.namespace, ev.job_id)
    job_type = job.type if job is not None else ev.type
    if job_type in ("system", "sysbatch"):
        return schedule_system(state, ev, now, ids)
    return schedule_generic(state, ev, now, ids)


def seeded_ids(seed: str) -> IdFactory:
    """Deterministic UUIDs, for tests and benchmarks that compare runs."""
    counter = iter(range(1 << 62))
    return lambda: str(uuid.uuid5(uuid.NAMESPACE_OID, f"{seed}/{next(counter)}"))


class _Loop:
    """The bookkeeping shared by the sync and async loops."""

    def __init__(self, ev: Evaluation, now: int, ids: IdFactory, max_attempts: int) -> None:
        self.ev = ev
        self.now = now
        self.ids = ids
        self.max_attempts = max_attempts
        self.left = max_attempts
        self.committed: list[PlanResult] = []
        self.followups: dict[str, Evaluation] = {}
        self.attempts = 0

    def done(self, result: SchedulerResult) -> bool:
        self.attempts += 1
        return result.plan is None

    def absorb(self, result: SchedulerResult, answer: PlanResult) -> bool:
        """Records what committed; True when the whole plan did."""
        assert result.plan is not None
        self.committed.append(answer)
        waiting = {e.id: e for e in result.new_evals if e.wait_until}
        for allocs in answer.node_allocation.values():
            for alloc in allocs:
                if alloc.followup_eval_id in waiting:
                    self.followups[alloc.followup_eval_id] = waiting[alloc.followup_eval_id]
        if answer.fully_committed(result.plan):
            return True
        progressed = any(answer.node_allocation.values()) or any(answer.node_update.values())
        self.left = self.max_attempts if progressed else self.left - 1
        return False

    def finish(self, result: SchedulerResult) -> SchedulerResult:
        kept = [e for e in result.new_evals if not e.wait_until]
        followups = {**self.followups}
        for e in result.new_evals:
            if e.wait_until and result.plan is None:
                followups[e.id] = e
        result.new_evals = kept + list(followups.values())
        result.committed = self.committed
        result.attempts = self.attempts
        return result

    def give_up(self, state: State, result: SchedulerResult) -> SchedulerResult:
        done, blocked = finish_eval(
            self.ev,
            self.now,
            state.index,
            result.eval.failed_tg_allocs,
            result.eval.queued_allocations,
            self.ids,
            force_block=True,
        )
        failed = msgspec.structs.replace(
            done,
            status=EVAL_FAILED,
            status_description=f"maximum attempts reached ({self.max_attempts})",
        )
        result.eval = failed
        result.new_evals = blocked
        return self.finish(result)


def _max_attempts(state: State, ev: Evaluation) -> int:
    job = state.job(ev.namespace, ev.job_id)
    return MAX_BATCH_ATTEMPTS if job is not None and job.type == "batch" else MAX_SERVICE_ATTEMPTS


def process(
    state: State,
    ev: Evaluation,
    now: int,
    submit: Callable[[Plan], SubmitResult],
    ids: IdFactory = new_id,
) -> SchedulerResult:
    """Schedules ``ev`` and submits plans until one commits whole (or attempts run out).

    The same loop as :func:`process_async`, driven here without an event loop: with a
    synchronous ``submit`` nothing in it ever suspends."""

    async def submit_now(plan: Plan) -> SubmitResult:
        return submit(plan)

    steps = process_async(state, ev, now, submit_now, ids)
    try:
        steps.send(None)
    except StopIteration as finished:
        result: SchedulerResult = finished.value
        return result
    steps.close()
    raise RuntimeError("the scheduling loop suspended, which a synchronous submit never does")


async def process_async(
    state: State,
    ev: Evaluation,
    now: int,
    submit: Callable[[Plan], Awaitable[SubmitResult]],
    ids: IdFactory = new_id,
) -> SchedulerResult:
    """Schedules ``ev`` and submits plans through an async plan applier (the server's
    workers) until one commits whole, re-planning on the newer state after a partial
    commit; without progress for ``max_attempts`` tries the evaluation fails."""
    loop = _Loop(ev, now, ids, _max_attempts(state, ev))
    while True:
        result = schedule(state, ev, now, ids)
        if loop.done(result):
            return loop.finish(result)
        assert result.plan is not None
        answer, refreshed = await submit(result.plan)
        if loop.absorb(result, answer):
            return loop.finish(result)
        state = refreshed if refreshed is not None else state
        if loop.left <= 0:
            return loop.give_up(state, result)
