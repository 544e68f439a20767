"""Turning a chosen node into an :class:`Allocation` with its resources and ports."""

from __future__ import annotations

from steppe.scheduler._context import NodeUsage, Pass
from steppe.scheduler._ports import assign
from steppe.structs import (
    AllocatedCpu,
    AllocatedMemory,
    AllocatedPortMapping,
    AllocatedResources,
    AllocatedSharedResources,
    AllocatedTaskResources,
    Allocation,
    AllocMetric,
    Job,
    NetworkResource,
    RescheduleTracker,
    TaskGroup,
)


def allocated_resources(pass_: Pass, tg: TaskGroup, usage: NodeUsage) -> AllocatedResources | None:
    """None when the node ran out of dynamic ports while assigning them."""
    node = usage.node
    ip = node.address
    used = usage.own_ports()
    low, high, rng = node.min_dynamic_port, node.max_dynamic_port, pass_.rng
    shared = assign(tg.networks, ip, used, low, high, rng) if tg.networks else ((), [])
    if shared is None:
        return None
    mappings: list[AllocatedPortMapping] = shared[1]
    tasks: dict[str, AllocatedTaskResources] = {}
    for task in tg.tasks:
        res = task.resources
        networks: tuple[NetworkResource, ...] = ()
        if res.networks:
            assigned = assign(res.networks, ip, used, low, high, rng)
            if assigned is None:
                return None
            networks = assigned[0]
        tasks[task.name] = AllocatedTaskResources(
            cpu=AllocatedCpu(cpu_shares=res.cpu),
            memory=AllocatedMemory(memory_mb=res.memory_mb, memory_max_mb=res.memory_max_mb),
            networks=networks,
        )
    return AllocatedResources(
        tasks=tasks,
        shared=AllocatedSharedResources(
            disk_mb=tg.ephemeral_disk.size_mb, networks=shared[0], ports=tuple(mappings)
        ),
    )


def new_alloc(
    pass_: Pass,
    job: Job,
    tg: TaskGroup,
    name: str,
    usage: NodeUsage,
    resources: AllocatedResources,
    metric: AllocMetric,
    previous: Allocation | None = None,
    tracker: RescheduleTracker | None = None,
) -> Allocation:
    node = usage.node
    return Allocation(
        id=pass_.ids(),
        namespace=job.namespace,
        eval_id=pass_.plan.eval_id,
        name=name,
        node_id=node.id,
        node_name=node.name,
        job_id=job.id,
        job_version=job.version,
        task_group=tg.name,
        allocated_resources=resources,
        metrics=metric,
        previous_allocation=previous.id if previous is not None else "",
        reschedule_tracker=tracker,
        create_time=pass_.now,
        modify_time=pass_.now,
    )
