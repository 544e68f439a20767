"""The scheduler: ``(state snapshot, evaluation) -> plan``, pure.

No I/O, no clock (``now`` is a parameter, Unix ns), no randomness but a
``random.Random`` seeded from the evaluation ID (the node shuffle, dynamic ports),
and IDs from an injectable factory. It reads a :class:`State` and returns a
:class:`SchedulerResult`; it never writes.

- :func:`schedule` runs one pass and returns the plan, the evaluation as it ends
  (``FailedTGAllocs``, ``QueuedAllocations``, ``BlockedEval``) and evaluations to
  create (blocked, delayed-reschedule follow-ups).
- :func:`process` / :func:`process_async` submit the plan through a callback that
  answers ``(PlanResult, newer State | None)`` and plan again on the newer state when
  only part committed, as Nomad's workers do.
- :func:`evaluate_plan` is the leader's plan check: what part of a plan still fits on
  the newest state, node by node; :func:`allocs_fit` is its core.
- :func:`describe_failures` puts an ``AllocMetric`` into words for ``job status``.
"""

from steppe.scheduler._describe import describe_failures
from steppe.scheduler._fit import allocs_fit, evaluate_plan
from steppe.scheduler._protocols import (
    IdFactory,
    NodeState,
    SchedulerResult,
    State,
    SubmitResult,
    new_id,
)
from steppe.scheduler._reconcile import tasks_updated
from steppe.scheduler._schedule import process, process_async, schedule, seeded_ids

__all__ = [
    "IdFactory",
    "NodeState",
    "SchedulerResult",
    "State",
    "SubmitResult",
    "allocs_fit",
    "describe_failures",
    "evaluate_plan",
    "new_id",
    "process",
    "process_async",
    "schedule",
    "seeded_ids",
    "tasks_updated",
]
