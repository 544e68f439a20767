"""Evaluations (why the scheduler must look at a job again) and plans (what it decided)."""

from __future__ import annotations

import msgspec

from steppe.structs._alloc import Allocation, AllocMetric
from steppe.structs._job import Base, Job

EVAL_PENDING = "pending"
EVAL_BLOCKED = "blocked"
EVAL_COMPLETE = "complete"
EVAL_FAILED = "failed"
EVAL_CANCELED = "canceled"

TRIGGER_JOB_REGISTER = "job-register"
TRIGGER_JOB_DEREGISTER = "job-deregister"
TRIGGER_NODE_UPDATE = "node-update"
TRIGGER_ALLOC_FAILURE = "alloc-failure"
TRIGGER_RETRY_FAILED_ALLOC = "alloc-failure"
TRIGGER_QUEUED_ALLOCS = "queued-allocs"
TRIGGER_RESCHEDULE = "alloc-reschedule"
TRIGGER_SCALING = "job-scaling"


class Evaluation(Base, frozen=True):
    id: str = ""
    namespace: str = "default"
    priority: int = 50
    type: str = "service"
    triggered_by: str = ""
    job_id: str = ""
    job_modify_index: int = 0
    node_id: str = ""
    node_modify_index: int = 0
    status: str = EVAL_PENDING
    status_description: str = ""
    wait_until: int = 0
    next_eval: str = ""
    previous_eval: str = ""
    blocked_eval: str = ""
    failed_tg_allocs: dict[str, AllocMetric] = msgspec.field(default_factory=dict)
    queued_allocations: dict[str, int] = msgspec.field(default_factory=dict)
    snapshot_index: int = 0
    create_index: int = 0
    modify_index: int = 0
    create_time: int = 0
    modify_time: int = 0

    def terminal(self) -> bool:
        return self.status in (EVAL_COMPLETE, EVAL_FAILED, EVAL_CANCELED)


class DesiredUpdates(Base, frozen=True):
    ignore: int = 0
    place: int = 0
    migrate: int = 0
    stop: int = 0
    in_place_update: int = 0
    destructive_update: int = 0
    canary: int = 0
    preemptions: int = 0


class PlanAnnotations(Base, frozen=True):
    desired_tg_updates: dict[str, DesiredUpdates] = msgspec.field(default_factory=dict)


class Plan(Base, frozen=True):
    """What one scheduler pass wants changed. ``node_update`` holds allocations to stop
    (their new desired status set), ``node_allocation`` new or updated ones, per node."""

    eval_id: str = ""
    priority: int = 50
    job: Job | None = None
    node_update: dict[str, tuple[Allocation, ...]] = msgspec.field(default_factory=dict)
    node_allocation: dict[str, tuple[Allocation, ...]] = msgspec.field(default_factory=dict)
    annotations: PlanAnnotations | None = None
    snapshot_index: int = 0

    def is_empty(self) -> bool:
        return not self.node_update and not self.node_allocation


class PlanResult(Base, frozen=True):
    """What the plan applier committed; a partial commit sets ``refresh_index`` so the
    worker knows which state to refresh to before retrying."""

    node_update: dict[str, tuple[Allocation, ...]] = msgspec.field(default_factory=dict)
    node_allocation: dict[str, tuple[Allocation, ...]] = msgspec.field(default_factory=dict)
    refresh_index: int = 0
    alloc_index: int = 0

    def fully_committed(self, plan: Plan) -> bool:
        expected = sum(len(v) for v in plan.node_allocation.values())
        expected += sum(len(v) for v in plan.node_update.values())
        got = sum(len(v) for v in self.node_allocation.values())
        got += sum(len(v) for v in self.node_update.values())
        return expected == got
