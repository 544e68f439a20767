"""What the scheduler reads, and what it hands back.

The scheduler never writes: it reads one immutable :class:`State` and returns a
:class:`SchedulerResult`. Submitting the plan is the caller's business (the server's
worker is async, the test harness is not), so the retry loop takes a ``submit``
callback instead of a ``Planner`` object with side effects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from steppe.structs import Allocation, Evaluation, Job, Node, NodeLoad, Plan, PlanResult


class NodeState(Protocol):
    """What the plan check reads: nodes, what runs on them, and allocations. The
    leader's plan applier provides it over a snapshot plus plans checked but not yet
    committed."""

    @property
    def index(self) -> int: ...

    def node(self, node_id: str) -> Node | None: ...

    def node_load(self, node_id: str) -> NodeLoad:
        """What the node's live allocations hold together."""
        ...

    def alloc(self, alloc_id: str) -> Allocation | None: ...


class State(NodeState, Protocol):
    """The read side of a state snapshot (``steppe.state.StateSnapshot`` provides it)."""

    def job(self, namespace: str, job_id: str) -> Job | None: ...

    def job_version(self, namespace: str, job_id: str, version: int) -> Job | None: ...

    def nodes(self) -> Iterable[Node]: ...

    def allocs_by_job(self, namespace: str, job_id: str) -> list[Allocation]: ...

    def eval(self, eval_id: str) -> Evaluation | None: ...


SubmitResult = tuple[PlanResult, State | None]
"""What the plan applier answers: what it committed, and a newer state when it
committed only part of the plan (the scheduler retries on that state)."""


def new_id() -> str:
    return str(uuid.uuid4())


IdFactory = Callable[[], str]


@dataclass
class SchedulerResult:
    """One evaluation's outcome.

    ``plan`` is None when nothing needs changing. ``eval`` is the processed evaluation
    as it should be stored: ``complete`` (possibly with ``FailedTGAllocs``), ``failed``,
    or ``blocked`` when a blocked evaluation was processed and still cannot place
    everything (the server puts it back in its blocked queue, as Nomad's ReblockEval).
    ``new_evals`` are evaluations to create: a blocked one for unplaced allocations,
    delayed follow-ups (``WaitUntil``) for allocations waiting to be rescheduled.
    ``committed`` collects what the plan applier accepted over all attempts."""

    eval: Evaluation
    plan: Plan | None = None
    new_evals: list[Evaluation] = field(default_factory=list)
    committed: list[PlanResult] = field(default_factory=list)
    attempts: int = 0
