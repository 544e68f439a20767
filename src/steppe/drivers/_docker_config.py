"""The docker driver's task ``config`` block: validation and the container it describes.

Pure functions, no engine calls, so every rule here is unit-testable. HCL blocks such as
``port_map { web = 80 }`` reach us as a list holding one dict (that is how HCL and Nomad's
JSON encode a block); a plain dict is accepted as well.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from steppe.drivers._base import PortMapping, TaskSpec
from steppe.drivers._cpu import CFS_PERIOD_US, cfs_quota_us, cpu_shares

MB = 1024 * 1024
LABEL_ALLOC = "com.steppe.alloc_id"
LABEL_TASK = "com.steppe.task"
LABEL_JOB = "com.steppe.job_id"

_STRING_KEYS = ("image", "command", "network_mode", "work_dir")
_LIST_KEYS = ("args", "entrypoint", "ports", "volumes")
_MAP_KEYS = ("port_map", "labels")
KNOWN_KEYS = frozenset((*_STRING_KEYS, *_LIST_KEYS, *_MAP_KEYS, "force_pull"))
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")


def block(value: Any) -> dict[str, Any] | None:
    """A block as one dict, whether given as a dict or as HCL's list of dicts; None if neither."""
    if isinstance(value, Mapping):
        items = [value]
    elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        items = value
    else:
        return None
    merged: dict[str, Any] = {}
    for item in items:
        merged.update({str(k): v for k, v in item.items() if not str(k).startswith("__")})
    return merged


def validate(config: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for key in sorted(k for k in config if not str(k).startswith("__")):
        if key not in KNOWN_KEYS:
            problems.append(f"config.{key}: not an option of the docker driver")
    image = config.get("image")
    if not image:
        problems.append("config.image: required")
    for key in _STRING_KEYS:
        if key in config and not isinstance(config[key], str):
            problems.append(f"config.{key}: must be a string")
    for key in _LIST_KEYS:
        value = config.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            problems.append(f"config.{key}: must be a list of strings")
    if "force_pull" in config and not isinstance(config["force_pull"], bool):
        problems.append("config.force_pull: must be true or false")
    problems += _validate_port_map(config.get("port_map"))
    labels = config.get("labels")
    if labels is not None:
        parsed = block(labels)
        if parsed is None or not all(isinstance(v, str) for v in parsed.values()):
            problems.append("config.labels: must be a map of strings")
    for i, volume in enumerate(v for v in config.get("volumes") or [] if isinstance(v, str)):
        if len(volume.split(":")) not in (2, 3) or not all(volume.split(":")[:2]):
            problems.append(f"config.volumes[{i}]: {volume!r} is not host_path:container_path[:ro]")
    return problems


def _validate_port_map(value: Any) -> list[str]:
    if value is None:
        return []
    parsed = block(value)
    if parsed is None:
        return ["config.port_map: must be a map of port label to container port"]
    return [
        f"config.port_map.{label}: {port!r} is not a port number (1-65535)"
        for label, port in parsed.items()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ]


def container_name(spec: TaskSpec) -> str:
    """``<task>-<alloc_id>`` as Nomad names them, so an operator can tell them apart."""
    return _NAME_BAD.sub("_", f"{spec.task_name}-{spec.alloc_id}")


def parse_signal(name: str) -> str:
    """A canonical signal name (``SIGTERM``) for ``kill_signal``; ValueError if unknown."""
    upper = name.strip().upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    try:
        return signal.Signals[upper].name
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def published_ports(spec: TaskSpec, config: Mapping[str, Any]) -> list[PortMapping]:
    """The ports to publish, each with the container port the task listens on.

    With the modern ``ports = ["web"]`` only the listed labels are published; without it
    (the old style) every port of the task is, mapped through ``port_map`` when given."""
    by_label = {p.label: p for p in spec.ports}
    port_map = block(config.get("port_map")) or {}
    wanted = config.get("ports")
    if wanted is not None:
        missing = [label for label in wanted if label not in by_label]
        if missing:
            raise ValueError(
                f"config.ports: {', '.join(missing)} not among the task's network ports"
                f" ({', '.join(sorted(by_label)) or 'none'})"
            )
        chosen = [by_label[label] for label in wanted]
    else:
        chosen = list(spec.ports)
    return [
        PortMapping(p.label, p.host_ip, p.host_port, int(port_map.get(p.label, p.container_port)))
        for p in chosen
    ]


def _command(config: Mapping[str, Any]) -> list[str] | None:
    command = config.get("command")
    args = list(config.get("args") or [])
    if command:
        return [command, *args]
    return args or None


def _env(spec: TaskSpec, ports: list[PortMapping]) -> dict[str, str]:
    """The task's env, with ``NOMAD_PORT_<label>`` naming the port inside the container
    when ``port_map`` moved it (as Nomad does); addresses keep the host side."""
    env = dict(spec.env)
    for p in ports:
        key = f"NOMAD_PORT_{p.label}"
        if key in env:
            env[key] = str(p.container_port)
    return env


def _binds(spec: TaskSpec, config: Mapping[str, Any]) -> list[str]:
    binds = [
        f"{spec.alloc_dir / 'alloc'}:/alloc",
        f"{spec.task_dir / 'local'}:/local",
        f"{spec.task_dir / 'secrets'}:/secrets",
    ]
    for volume in config.get("volumes") or []:
        host, _, rest = volume.partition(":")
        if not PurePosixPath(host).is_absolute():
            host = str(spec.task_dir / host)
        binds.append(f"{host}:{rest}")
    return binds


def labels(spec: TaskSpec, config: Mapping[str, Any]) -> dict[str, str]:
    user = {k: str(v) for k, v in (block(config.get("labels")) or {}).items()}
    return {
        **spec.labels,
        **user,
        LABEL_ALLOC: spec.alloc_id,
        LABEL_TASK: spec.task_name,
        LABEL_JOB: spec.job_id,
    }


def memory_limits(spec: TaskSpec) -> dict[str, int]:
    """Hard limit at ``memory_max`` when oversubscription is asked for, else at ``memory``;
    swap equal to the limit so the task is OOM-killed instead of swapping."""
    hard = (spec.memory_max_mb or spec.memory_mb) * MB
    limits = {"Memory": hard, "MemorySwap": hard}
    if spec.memory_max_mb and spec.memory_max_mb > spec.memory_mb:
        limits["MemoryReservation"] = spec.memory_mb * MB
    return limits


def create_body(spec: TaskSpec, config: Mapping[str, Any]) -> dict[str, Any]:
    """The Engine API ``POST /containers/create`` body for ``spec``."""
    ports = published_ports(spec, config)
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        for proto in ("tcp", "udp"):
            key = f"{p.container_port}/{proto}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": p.host_ip, "HostPort": str(p.host_port)})
    host_config: dict[str, Any] = {
        "Init": True,
        "Binds": _binds(spec, config),
        "PortBindings": bindings,
        "CpuShares": cpu_shares(spec.cpu_mhz),
        "CpuPeriod": CFS_PERIOD_US,
        "CpuQuota": cfs_quota_us(spec.cpu_mhz),
        **memory_limits(spec),
    }
    if config.get("network_mode"):
        host_config["NetworkMode"] = config["network_mode"]
    body: dict[str, Any] = {
        "Image": config["image"],
        "Env": [f"{k}={v}" for k, v in _env(spec, ports).items()],
        "Labels": labels(spec, config),
        "ExposedPorts": exposed,
        "HostConfig": host_config,
    }
    command = _command(config)
    if command:
        body["Cmd"] = command
    if config.get("entrypoint"):
        body["Entrypoint"] = list(config["entrypoint"])
    if config.get("work_dir"):
        body["WorkingDir"] = config["work_dir"]
    if spec.user:
        body["User"] = spec.user
    return body
