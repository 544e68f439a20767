"""The environment a task sees: Nomad's ``NOMAD_*`` variables (each again as ``STEPPE_*``),
and ``${...}`` interpolation of the task's ``env`` and driver ``config``.

Nomad's names and meanings: ``NOMAD_PORT_<label>`` is the port the task listens on (the
mapped ``to`` port when there is one), ``NOMAD_HOST_PORT_<label>`` the host's port, and
``NOMAD_ADDR_<label>`` the address other machines reach it at (host IP : host port).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steppe.drivers import PortMapping
from steppe.structs import Allocation, Job, Node, Task, TaskGroup

_INVALID_ENV = re.compile(r"[^A-Za-z0-9_]")
_INTERP = re.compile(r"\$\{([^{}]+)\}")


def clean_env_name(name: str) -> str:
    return _INVALID_ENV.sub("_", name)


def alloc_ports(alloc: Allocation, task: str, default_ip: str) -> tuple[PortMapping, ...]:
    """The allocation's ports the task can use: the group's shared ports and its own."""
    shared = alloc.allocated_resources.shared
    found: dict[str, PortMapping] = {}
    for p in shared.ports:
        ip = p.host_ip or default_ip
        found[p.label] = PortMapping(p.label, ip, p.value, p.to if p.to > 0 else p.value)
    networks = list(shared.networks)
    task_res = alloc.allocated_resources.tasks.get(task)
    if task_res is not None:
        networks.extend(task_res.networks)
    for net in networks:
        ip = net.ip or default_ip
        for port in net.all_ports():
            if port.label not in found:
                to = port.to if port.to > 0 else port.value
                found[port.label] = PortMapping(port.label, ip, port.value, to)
    return tuple(found.values())


@dataclass(frozen=True, slots=True)
class TaskPaths:
    """Paths as the task sees them: host paths, or ``/alloc`` etc. inside a chroot/image."""

    alloc_dir: str
    task_dir: str
    secrets_dir: str


def nomad_env(
    alloc: Allocation,
    job: Job,
    group: TaskGroup,
    task: Task,
    node: Node,
    paths: TaskPaths,
    ports: tuple[PortMapping, ...],
) -> dict[str, str]:
    env: dict[str, str] = {
        "ALLOC_ID": alloc.id,
        "SHORT_ALLOC_ID": alloc.id[:8],
        "ALLOC_NAME": alloc.name,
        "ALLOC_INDEX": str(alloc.index),
        "JOB_ID": job.id,
        "JOB_NAME": job.name or job.id,
        "GROUP_NAME": group.name,
        "TASK_NAME": task.name,
        "DC": node.datacenter,
        "REGION": job.region,
        "NAMESPACE": alloc.namespace or job.namespace,
        "ALLOC_DIR": paths.alloc_dir,
        "TASK_DIR": paths.task_dir,
        "SECRETS_DIR": paths.secrets_dir,
        "CPU_LIMIT": str(task.resources.cpu),
        "MEMORY_LIMIT": str(task.resources.memory_mb),
    }
    if task.resources.memory_max_mb:
        env["MEMORY_MAX_LIMIT"] = str(task.resources.memory_max_mb)
    for port in ports:
        label = clean_env_name(port.label)
        env[f"IP_{label}"] = port.host_ip
        env[f"PORT_{label}"] = str(port.container_port)
        env[f"ADDR_{label}"] = f"{port.host_ip}:{port.host_port}"
        env[f"HOST_IP_{label}"] = port.host_ip
        env[f"HOST_PORT_{label}"] = str(port.host_port)
        env[f"HOST_ADDR_{label}"] = f"{port.host_ip}:{port.host_port}"
    meta = {**job.meta, **group.meta, **task.meta}
    for key, value in meta.items():
        env[f"META_{clean_env_name(key)}"] = value
        env[f"META_{clean_env_name(key).upper()}"] = value
    out: dict[str, str] = {}
    for key, value in env.items():
        out[f"NOMAD_{key}"] = value
        out[f"STEPPE_{key}"] = value
    return out


def interpolation_vars(env: Mapping[str, str], node: Node) -> dict[str, str]:
    """What ``${...}`` may name: the task's env, ``node.*``, ``attr.*`` and ``meta.*``."""
    values = dict(env)
    values.update(
        {
            "node.unique.id": node.id,
            "node.unique.name": node.name,
            "node.datacenter": node.datacenter,
            "node.class": node.node_class,
            "node.region": "",
        }
    )
    values.update({f"attr.{k}": v for k, v in node.attributes.items()})
    values.update({f"meta.{k}": v for k, v in node.meta.items()})
    values.update({f"env.{k}": v for k, v in env.items()})
    return values


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Replaces ``${name}`` with its value; unknown names stay as written, as in Nomad."""
    return _INTERP.sub(lambda m: values.get(m.group(1).strip(), m.group(0)), text)


def interpolate_any(value: Any, values: Mapping[str, str]) -> Any:
    """Interpolates every string inside a driver ``config`` block, keeping its shape."""
    if isinstance(value, str):
        return interpolate(value, values)
    if isinstance(value, list | tuple):
        return [interpolate_any(v, values) for v in value]
    if isinstance(value, dict):
        return {k: interpolate_any(v, values) for k, v in value.items()}
    return value


def task_env(base: Mapping[str, str], task: Task, node: Node) -> dict[str, str]:
    """The task's full environment: ``NOMAD_*`` first, then its ``env`` stanza interpolated
    (which may refer to the former, and to earlier keys of itself)."""
    env = dict(base)
    for key, value in task.env.items():
        env[key] = interpolate(value, interpolation_vars(env, node))
    return env
