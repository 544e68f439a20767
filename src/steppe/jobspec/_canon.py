"""Fills in what a job leaves out, the way Nomad's registration does, so that a job from
an HCL file and the same job sent as JSON end up identical in state."""

from __future__ import annotations

from msgspec.structs import replace

from steppe.jobspec._periodic import canonical as canonical_parent
from steppe.structs import (
    Job,
    Service,
    Task,
    TaskGroup,
    default_reschedule_policy,
    default_restart_policy,
)


def canonicalize_job(job: Job) -> Job:
    """Name defaults to ID, policies to the job type's, services and checks get names."""
    groups = tuple(_group(job, g) for g in job.task_groups)
    return replace(
        canonical_parent(job),
        name=job.name or job.id,
        region=job.region or "global",
        namespace=job.namespace or "default",
        type=job.type or "service",
        task_groups=groups,
    )


def _group(job: Job, group: TaskGroup) -> TaskGroup:
    restart = group.restart_policy or default_restart_policy(job.type)
    reschedule = group.reschedule_policy
    if reschedule is None and job.type != "system":
        reschedule = default_reschedule_policy(job.type)
    tasks = tuple(_task(job, group, t) for t in group.tasks)
    prefix = f"{job.name or job.id}-{group.name}"
    services = tuple(_service(s, prefix) for s in group.services)
    return replace(
        group, restart_policy=restart, reschedule_policy=reschedule, tasks=tasks, services=services
    )


def _task(job: Job, group: TaskGroup, task: Task) -> Task:
    restart = task.restart_policy or group.restart_policy or default_restart_policy(job.type)
    prefix = f"{job.name or job.id}-{group.name}-{task.name}"
    return replace(
        task,
        restart_policy=restart,
        services=tuple(_service(s, prefix) for s in task.services),
    )


def _service(service: Service, default_name: str) -> Service:
    name = service.name or default_name
    checks = tuple(
        c if c.name else replace(c, name=f'service: "{name}" check') for c in service.checks
    )
    return replace(service, name=name, checks=checks)
