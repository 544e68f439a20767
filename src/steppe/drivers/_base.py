"""The task driver contract: how the client starts, watches and stops one task.

Drivers know nothing of jobs or allocations beyond what :class:`TaskSpec` carries;
the client's task runner translates a job's task into a spec, keeps the
:class:`TaskHandle` (persisted in the client's state so a restarted agent can
re-attach), and applies the restart policy on :class:`ExitResult`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A port the scheduler assigned: reachable at ``host_ip:host_port``; inside a
    container it is ``container_port`` (equal to ``host_port`` when not mapped)."""

    label: str
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True, slots=True)
class TaskSpec:
    alloc_id: str
    job_id: str
    group: str
    task_name: str
    config: dict[str, Any]
    """The task's ``config`` block, as parsed from the job (driver-specific)."""
    env: dict[str, str]
    alloc_dir: Path
    """The allocation's directory; it holds ``alloc/`` (shared) and one dir per task."""
    task_dir: Path
    """``<alloc_dir>/<task_name>``, with ``local/`` and ``secrets/`` inside."""
    stdout_path: Path
    stderr_path: Path
    cpu_mhz: int = 100
    memory_mb: int = 300
    memory_max_mb: int = 0
    ports: tuple[PortMapping, ...] = ()
    user: str | None = None
    kill_signal: str = "SIGINT"
    kill_timeout: float = 5.0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskHandle:
    """What a driver needs to find a running task again, also after an agent restart.

    ``state`` is driver-private and must be JSON-serialisable."""

    driver: str
    task_id: str
    started_at: float
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExitResult:
    exit_code: int
    signal: int = 0
    oom_killed: bool = False
    error: str = ""

    @property
    def successful(self) -> bool:
        return self.exit_code == 0 and not self.signal and not self.oom_killed and not self.error


class Driver(abc.ABC):
    """One way of running a task. Drivers are stateless between calls except for
    what they keep in handles; one instance serves every task on the node."""

    name: str

    @abc.abstractmethod
    async def fingerprint(self) -> dict[str, str] | None:
        """Node attributes this driver contributes (``driver.<name>``,
        ``driver.<name>.version``...), or None when it cannot run tasks here."""

    @abc.abstractmethod
    def validate_config(self, config: dict[str, Any]) -> list[str]:
        """Problems with a task's ``config`` block, each naming its field; empty if fine."""

    @abc.abstractmethod
    async def start(self, spec: TaskSpec) -> TaskHandle:
        """Starts the task; raises DriverError with a readable reason if it cannot."""

    @abc.abstractmethod
    async def wait(self, handle: TaskHandle) -> ExitResult:
        """Returns when the task has exited (immediately if it already has)."""

    @abc.abstractmethod
    async def stop(self, handle: TaskHandle, signal: str, timeout: float) -> None:
        """Sends ``signal``, waits up to ``timeout`` seconds, then kills the whole task."""

    @abc.abstractmethod
    async def destroy(self, handle: TaskHandle) -> None:
        """Frees what the task held (container, cgroup). Idempotent."""

    @abc.abstractmethod
    async def recover(self, handle: TaskHandle) -> bool:
        """Re-attaches to a task started by an earlier agent; False if it is gone."""

    async def list_tasks(self) -> list[TaskHandle]:
        """Tasks of this driver found on the node (e.g. labelled containers), so the
        client can remove those whose allocation no longer exists."""
        return []

    async def signal(self, handle: TaskHandle, signal: str) -> None:  # noqa: B027
        """Delivers a signal without stopping the task (template change_mode = signal)."""
