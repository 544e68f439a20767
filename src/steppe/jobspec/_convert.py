"""HCL job file data -> :class:`~steppe.structs.Job`, collecting every problem on the way."""

from __future__ import annotations

from typing import Any

from steppe.jobspec import _parts as parts
from steppe.jobspec import _periodic as periodic
from steppe.jobspec._reader import Reader, Sink, Where
from steppe.structs import (
    EphemeralDisk,
    Job,
    LogConfig,
    NetworkResource,
    Resources,
    RestartPolicy,
    Task,
    TaskGroup,
    default_reschedule_policy,
    default_restart_policy,
)

_JOB_KEYS = (
    "id",
    "name",
    "region",
    "datacenters",
    "type",
    "priority",
    "namespace",
    "node_pool",
    "all_at_once",
    "meta",
    "constraint",
    "affinity",
    "spread",
    "group",
    "reschedule",
    "update",
    "migrate",
    "periodic",
    "parameterized",
)
_GROUP_KEYS = (
    "count",
    "constraint",
    "affinity",
    "spread",
    "task",
    "restart",
    "reschedule",
    "ephemeral_disk",
    "network",
    "service",
    "meta",
    "update",
    "migrate",
)
_TASK_KEYS = (
    "driver",
    "user",
    "config",
    "env",
    "service",
    "constraint",
    "affinity",
    "resources",
    "restart",
    "template",
    "meta",
    "kill_timeout",
    "kill_signal",
    "logs",
    "leader",
    "dispatch_payload",
)


def convert_document(sink: Sink) -> Job | None:
    top = Reader(sink, sink.doc.data, (), Where())
    top.check(("job",))
    jobs = top.labeled("job")
    if not jobs:
        if "job" not in sink.doc.data and not sink.problems:
            sink.report(Where(), 'no job found; a job file holds one block job "NAME" { ... }', ())
        return None
    if len(jobs) > 1:
        jobs[1][1].problem(None, "a job file holds exactly one job")
    name, reader = jobs[0]
    return _job(name, reader)


def _job(job_id: str, r: Reader) -> Job:
    r.check(_JOB_KEYS)
    for ignored in ("update", "migrate"):
        r.block(ignored)
    job_type = r.string("type", "service")
    reschedule = r.block("reschedule")
    reschedule_base = default_reschedule_policy(job_type)
    if reschedule is not None:
        reschedule_base = parts.reschedule_policy(reschedule, reschedule_base)
    groups = tuple(_group(name, g, job_type, reschedule_base) for name, g in r.labeled("group"))
    datacenters = r.strings("datacenters")
    periodic_block = r.block("periodic")
    parameterized_block = r.block("parameterized")
    return Job(
        id=job_id,
        name=r.string("name", job_id),
        region=r.string("region", "global"),
        namespace=r.string("namespace", "default"),
        node_pool=r.string("node_pool", "default"),
        type=job_type,
        priority=r.integer("priority", 50),
        all_at_once=r.boolean("all_at_once"),
        datacenters=datacenters if datacenters is not None else ("*",),
        meta=r.str_map("meta") or {},
        constraints=parts.constraints(r),
        affinities=parts.affinities(r),
        spreads=parts.spreads(r),
        task_groups=groups,
        periodic=periodic.periodic(periodic_block) if periodic_block else None,
        parameterized_job=(
            periodic.parameterized(parameterized_block) if parameterized_block else None
        ),
    )


def _group(name: str, r: Reader, job_type: str, reschedule_base: Any) -> TaskGroup:
    r.check(_GROUP_KEYS)
    for ignored in ("update", "migrate"):
        r.block(ignored)
    restart = default_restart_policy(job_type)
    restart_block = r.block("restart")
    if restart_block is not None:
        restart = parts.restart_policy(restart_block, restart)
    reschedule = reschedule_base
    reschedule_block = r.block("reschedule")
    if reschedule_block is not None:
        reschedule = parts.reschedule_policy(reschedule_block, reschedule_base)
    disk_block = r.block("ephemeral_disk")
    legacy: list[NetworkResource] = []
    tasks = []
    for task_name, t in r.labeled("task"):
        task, nets = _task(task_name, t, restart)
        tasks.append(task)
        legacy.extend(nets)
    own = tuple(parts.network(n) for n in r.blocks("network"))
    return TaskGroup(
        name=name,
        count=r.integer("count", 1),
        constraints=parts.constraints(r),
        affinities=parts.affinities(r),
        spreads=parts.spreads(r),
        tasks=tuple(tasks),
        restart_policy=restart,
        reschedule_policy=reschedule,
        ephemeral_disk=parts.ephemeral_disk(disk_block) if disk_block else EphemeralDisk(),
        networks=parts.merge_networks(own, legacy),
        services=parts.services(r),
        meta=r.str_map("meta") or {},
    )


def _task(name: str, r: Reader, group_restart: RestartPolicy) -> tuple[Task, list[NetworkResource]]:
    r.check(_TASK_KEYS)
    config = r.any_map("config") or {}
    restart = group_restart
    restart_block = r.block("restart")
    if restart_block is not None:
        restart = parts.restart_policy(restart_block, group_restart)
    resources, legacy = _resources(r.block("resources"), _port_map(r, config))
    logs = r.block("logs")
    log_config = LogConfig()
    if logs is not None:
        logs.check(("max_files", "max_file_size"))
        log_config = LogConfig(
            max_files=logs.integer("max_files", log_config.max_files),
            max_file_size_mb=logs.integer("max_file_size", log_config.max_file_size_mb),
        )
    payload_block = r.block("dispatch_payload")
    task = Task(
        name=name,
        driver=r.string("driver"),
        user=r.string("user"),
        config=config,
        env=r.str_map("env") or {},
        services=parts.services(r),
        constraints=parts.constraints(r),
        affinities=parts.affinities(r),
        resources=resources,
        restart_policy=restart,
        templates=parts.templates(r),
        meta=r.str_map("meta") or {},
        kill_timeout=r.duration("kill_timeout", Task().kill_timeout),
        kill_signal=r.string("kill_signal"),
        log_config=log_config,
        leader=r.boolean("leader"),
        dispatch_payload=periodic.dispatch_payload(payload_block) if payload_block else None,
    )
    return task, legacy


def _port_map(r: Reader, config: dict[str, Any]) -> dict[str, int]:
    raw = config.get("port_map")
    items = raw if isinstance(raw, list) else [raw] if raw is not None else []
    mapping: dict[str, int] = {}
    for item in items:
        if not isinstance(item, dict):
            r.problem("config", "port_map must be a block of label = port")
            continue
        for label, port in item.items():
            if isinstance(port, int) and not isinstance(port, bool):
                mapping[label] = port
            elif isinstance(port, str) and port.isdigit():
                mapping[label] = int(port)
            else:
                r.problem("config", f"port_map: '{label}' must be a port number, got {port!r}")
    return mapping


def _resources(
    r: Reader | None, port_map: dict[str, int]
) -> tuple[Resources, list[NetworkResource]]:
    base = Resources()
    if r is None:
        return base, []
    r.check(("cpu", "cores", "memory", "memory_max", "disk", "network"))
    legacy = [parts.network(n, port_map) for n in r.blocks("network")]
    resources = Resources(
        cpu=r.integer("cpu", base.cpu),
        cores=r.integer("cores", base.cores),
        memory_mb=r.integer("memory", base.memory_mb),
        memory_max_mb=r.integer("memory_max", base.memory_max_mb),
        disk_mb=r.integer("disk", base.disk_mb),
    )
    return resources, legacy
