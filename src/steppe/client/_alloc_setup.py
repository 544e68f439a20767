"""Turning an allocation's task into what its runner needs: env, driver spec, services."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from steppe.client._allocdir import AllocDir
from steppe.client._env import (
    TaskPaths,
    alloc_ports,
    interpolate,
    interpolate_any,
    interpolation_vars,
    nomad_env,
    task_env,
)
from steppe.client._restart import policy_for
from steppe.client._services import (
    ServiceRegistrar,
    ServiceRegistration,
    build_registration,
    service_id,
)
from steppe.client._task_runner import TaskContext
from steppe.client._templates import TemplateHookFactory
from steppe.drivers import Driver, TaskSpec
from steppe.structs import NS, Allocation, Job, Node, Service, Task, TaskGroup

ISOLATED_FS_DRIVERS = frozenset({"docker", "exec"})
"""Drivers whose tasks see the alloc dir at ``/alloc``, ``/local``, ``/secrets``."""

DEFAULT_KILL_SIGNAL = {"docker": "SIGTERM"}


def fs_isolated(driver: Driver | None) -> bool:
    """Whether the driver's tasks see a filesystem of their own (a driver may say so with
    an ``fs_isolation`` attribute of ``"none"``, ``"chroot"`` or ``"image"``)."""
    if driver is None:
        return False
    isolation = getattr(driver, "fs_isolation", None)
    if isinstance(isolation, str):
        return isolation != "none"
    return driver.name in ISOLATED_FS_DRIVERS


def _paths(alloc_dir: AllocDir, task: str, driver: Driver | None) -> TaskPaths:
    if fs_isolated(driver):
        return TaskPaths("/alloc", "/local", "/secrets")
    task_dir = alloc_dir.task_dir(task)
    return TaskPaths(str(alloc_dir.shared), str(task_dir / "local"), str(task_dir / "secrets"))


def service_meta(alloc: Allocation, job: Job, group: TaskGroup, task: str) -> dict[str, str]:
    return {
        "external-source": "nomad",
        "alloc_id": alloc.id,
        "job_id": job.id,
        "group": group.name,
        "task": task,
    }


def registrations(
    services: tuple[Service, ...],
    *,
    alloc: Allocation,
    job: Job,
    group: TaskGroup,
    owner: str,
    spec: TaskSpec,
    node: Node,
) -> tuple[ServiceRegistration, ...]:
    """``owner`` is the task's name, or ``group-<name>`` for a group's own services."""
    values = {
        **interpolation_vars(spec.env, node),
        "JOB": job.name or job.id,
        "TASKGROUP": group.name,
        "TASK": spec.task_name,
        "BASE": f"{job.name or job.id}-{group.name}-{spec.task_name}",
    }
    meta = service_meta(alloc, job, group, spec.task_name)
    return tuple(
        build_registration(
            svc,
            sid=service_id(alloc.id, owner, interpolate(svc.name, values), svc.port_label),
            ports=spec.ports,
            default_ip=node.address,
            values=values,
            meta=meta,
        )
        for svc in services
    )


def task_spec(
    alloc: Allocation,
    job: Job,
    group: TaskGroup,
    task: Task,
    node: Node,
    alloc_dir: AllocDir,
    driver: Driver | None,
) -> TaskSpec:
    ports = alloc_ports(alloc, task.name, node.address)
    base = nomad_env(alloc, job, group, task, node, _paths(alloc_dir, task.name, driver), ports)
    env = task_env(base, task, node)
    config = interpolate_any(task.config, interpolation_vars(env, node))
    return TaskSpec(
        alloc_id=alloc.id,
        job_id=job.id,
        group=group.name,
        task_name=task.name,
        config=config,
        env=env,
        alloc_dir=alloc_dir.root,
        task_dir=alloc_dir.task_dir(task.name),
        stdout_path=alloc_dir.log_path(task.name, "stdout"),
        stderr_path=alloc_dir.log_path(task.name, "stderr"),
        cpu_mhz=task.resources.cpu,
        memory_mb=task.resources.memory_mb,
        memory_max_mb=task.resources.memory_max_mb,
        ports=ports,
        user=task.user or None,
        kill_signal=task.kill_signal or DEFAULT_KILL_SIGNAL.get(task.driver, "SIGINT"),
        kill_timeout=task.kill_timeout / NS,
        labels={"alloc_id": alloc.id, "job_id": job.id, "group": group.name, "task": task.name},
    )


def task_context(
    alloc: Allocation,
    job: Job,
    group: TaskGroup,
    task: Task,
    *,
    node: Node,
    alloc_dir: AllocDir,
    drivers: Mapping[str, Driver],
    services: ServiceRegistrar | None,
    templates: TemplateHookFactory | None,
    clock: Callable[[], float],
) -> TaskContext:
    driver = drivers.get(task.driver)
    spec = task_spec(alloc, job, group, task, node, alloc_dir, driver)
    regs = registrations(
        task.services, alloc=alloc, job=job, group=group, owner=task.name, spec=spec, node=node
    )
    return TaskContext(
        alloc=alloc,
        job=job,
        task=task,
        driver=driver,
        spec=spec,
        policy=policy_for(task.restart_policy, group.restart_policy, job.type),
        registrations=regs,
        services=services,
        templates=templates,
        clock=clock,
    )
