"""What a pass reports besides its plan: the evaluation's new status, a blocked
evaluation for what could not be placed, follow-ups for delayed reschedules."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from steppe.structs import (
    DESIRED_STOP,
    EVAL_BLOCKED,
    EVAL_COMPLETE,
    EVAL_PENDING,
    NS,
    TRIGGER_ALLOC_FAILURE,
    Allocation,
    AllocMetric,
    Evaluation,
)

FOLLOWUP_BATCH_WINDOW = 5 * NS
"""Failed allocations due within this window share one follow-up evaluation."""


def stopped(alloc: Allocation, why: str, client_status: str, now: int) -> Allocation:
    return msgspec.structs.replace(
        alloc,
        desired_status=DESIRED_STOP,
        desired_description=why,
        client_status=client_status or alloc.client_status,
        modify_time=now,
    )


def finish_eval(
    ev: Evaluation,
    now: int,
    snapshot_index: int,
    failed: dict[str, AllocMetric],
    queued: dict[str, int],
    ids: Callable[[], str],
    block: bool = True,
    force_block: bool = False,
) -> tuple[Evaluation, list[Evaluation]]:
    """The processed eval, plus a blocked eval when something could not be placed
    (or the eval itself, reblocked, when it was a blocked eval already). System jobs
    pass ``block=False``: a node joining or changing re-evaluates them anyway."""
    new: list[Evaluation] = []
    status, blocked_id = EVAL_COMPLETE, ev.blocked_eval
    wants_block = force_block or (bool(failed) and block)
    if wants_block and ev.status == EVAL_BLOCKED:
        status = EVAL_BLOCKED
    elif wants_block:
        blocked = Evaluation(
            id=ids(),
            namespace=ev.namespace,
            priority=ev.priority,
            type=ev.type,
            triggered_by=ev.triggered_by,
            job_id=ev.job_id,
            job_modify_index=ev.job_modify_index,
            status=EVAL_BLOCKED,
            status_description="created to place remaining allocations",
            previous_eval=ev.id,
            create_time=now,
            modify_time=now,
        )
        new.append(blocked)
        blocked_id = blocked.id
    done = msgspec.structs.replace(
        ev,
        status=status,
        status_description="" if status == EVAL_COMPLETE else ev.status_description,
        failed_tg_allocs=failed,
        queued_allocations=queued,
        blocked_eval=blocked_id,
        snapshot_index=snapshot_index,
        modify_time=now,
    )
    return done, new


def followup_evals(
    ev: Evaluation,
    later: list[tuple[Allocation, int]],
    now: int,
    ids: Callable[[], str],
) -> tuple[list[Evaluation], dict[str, str]]:
    """Evaluations that wake at ``WaitUntil``, and which one each allocation waits for."""
    evals: list[Evaluation] = []
    waits: dict[str, str] = {}
    current: Evaluation | None = None
    for alloc, when in sorted(later, key=lambda item: item[1]):
        if current is None or when - current.wait_until > FOLLOWUP_BATCH_WINDOW:
            current = Evaluation(
                id=ids(),
                namespace=ev.namespace,
                priority=ev.priority,
                type=ev.type,
                triggered_by=TRIGGER_ALLOC_FAILURE,
                job_id=ev.job_id,
                job_modify_index=ev.job_modify_index,
                status=EVAL_PENDING,
                status_description="created for delayed rescheduling",
                wait_until=when,
                previous_eval=ev.id,
                create_time=now,
                modify_time=now,
            )
            evals.append(current)
        waits[alloc.id] = current.id
    return evals, waits
