"""``job plan``: what the scheduler would do with a job, without doing it.

The scheduler runs one pass over the current snapshot as if the job were already
registered; nothing is written. Its plan annotations say what would change, and its
placement failures whether it would fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from steppe.scheduler import schedule
from steppe.server._endpoints import spec_changed
from steppe.state import StateSnapshot
from steppe.structs import (
    EVAL_PENDING,
    TRIGGER_JOB_REGISTER,
    Allocation,
    DesiredUpdates,
    Evaluation,
    Job,
    Node,
    NodeLoad,
    PlanAnnotations,
    to_builtins,
)


class _WithJob:
    """A snapshot in which ``job`` is already the job's current version."""

    def __init__(self, snap: StateSnapshot, job: Job) -> None:
        self._snap = snap
        self._job = job
        self.index = snap.index

    def _is_it(self, namespace: str, job_id: str) -> bool:
        return (namespace, job_id) == (self._job.namespace, self._job.id)

    def job(self, namespace: str, job_id: str) -> Job | None:
        return self._job if self._is_it(namespace, job_id) else self._snap.job(namespace, job_id)

    def job_version(self, namespace: str, job_id: str, version: int) -> Job | None:
        if self._is_it(namespace, job_id) and version == self._job.version:
            return self._job
        return self._snap.job_version(namespace, job_id, version)

    def nodes(self) -> Iterable[Node]:
        return self._snap.nodes()

    def node(self, node_id: str) -> Node | None:
        return self._snap.node(node_id)

    def allocs_by_job(self, namespace: str, job_id: str) -> list[Allocation]:
        return self._snap.allocs_by_job(namespace, job_id)

    def node_load(self, node_id: str) -> NodeLoad:
        return self._snap.node_load(node_id)

    def alloc(self, alloc_id: str) -> Allocation | None:
        return self._snap.alloc(alloc_id)

    def eval(self, eval_id: str) -> Evaluation | None:
        return self._snap.eval(eval_id)


def preview_plan(snap: StateSnapshot, job: Job, now: int) -> dict[str, Any]:
    existing = snap.job(job.namespace, job.id)
    changed = spec_changed(existing, job)
    version = 0 if existing is None else existing.version + (1 if changed else 0)
    candidate = msgspec.structs.replace(job, version=version)
    ev = Evaluation(
        id="plan-preview",
        namespace=job.namespace,
        priority=job.priority,
        type=job.type,
        triggered_by=TRIGGER_JOB_REGISTER,
        job_id=job.id,
        status=EVAL_PENDING,
    )
    result = schedule(_WithJob(snap, candidate), ev, now, lambda: "preview")
    annotations = result.plan.annotations if result.plan is not None else None
    if annotations is None:
        unchanged = {
            g.name: DesiredUpdates(
                ignore=sum(
                    1
                    for a in snap.allocs_by_job(job.namespace, job.id)
                    if a.task_group == g.name and not a.terminal()
                )
            )
            for g in candidate.task_groups
        }
        annotations = PlanAnnotations(desired_tg_updates=unchanged)
    diff_type = "Added" if existing is None else ("Edited" if changed else "None")
    return {
        "Annotations": to_builtins(annotations),
        "FailedTGAllocs": to_builtins(result.eval.failed_tg_allocs) or None,
        "JobModifyIndex": existing.job_modify_index if existing else 0,
        "CreatedEvals": None,
        "Diff": {"Type": diff_type, "ID": job.id},
        "Warnings": "",
        "Index": snap.index,
    }
