"""Shared rig for the process drivers' tests: builds alloc dirs and specs, and destroys every
task it started when the test ends, whatever happened."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from steppe.drivers._base import TaskHandle, TaskSpec
from steppe.drivers._supervised import SupervisedDriver


class TaskRig:
    def __init__(self, driver: SupervisedDriver, tmp_path: Path) -> None:
        self.driver = driver
        self.tmp_path = tmp_path
        self.handles: list[TaskHandle] = []

    def spec(self, command: str, *args: str, task: str = "web", **kw: Any) -> TaskSpec:
        alloc_id = str(uuid.uuid4())
        alloc_dir = self.tmp_path / alloc_id
        task_dir = alloc_dir / task
        for path in (alloc_dir / "alloc" / "logs", task_dir / "local", task_dir / "secrets"):
            path.mkdir(parents=True, exist_ok=True)
        fields: dict[str, Any] = {
            "alloc_id": alloc_id,
            "job_id": "job",
            "group": "group",
            "task_name": task,
            "config": {"command": command, "args": list(args)},
            "env": {},
            "alloc_dir": alloc_dir,
            "task_dir": task_dir,
            "stdout_path": alloc_dir / "alloc" / "logs" / f"{task}.stdout.0",
            "stderr_path": alloc_dir / "alloc" / "logs" / f"{task}.stderr.0",
        }
        fields.update(kw)
        return TaskSpec(**fields)

    def sh(self, script: str, **kw: Any) -> TaskSpec:
        return self.spec("sh", "-c", script, **kw)

    async def start(self, spec: TaskSpec) -> TaskHandle:
        handle = await self.driver.start(spec)
        self.handles.append(handle)
        return handle

    async def cleanup(self) -> None:
        for handle in self.handles:
            try:
                await self.driver.destroy(handle)
            except Exception:
                for key, kill in (("pgid", os.killpg), ("executor_pid", os.kill)):
                    with contextlib.suppress(OSError):
                        kill(int(handle.state[key]), signal.SIGKILL)


def through_json(handle: TaskHandle) -> TaskHandle:
    """A handle as a restarted agent reads it back from its state file."""
    raw = json.loads(json.dumps(handle.state))
    return TaskHandle(handle.driver, handle.task_id, handle.started_at, raw)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, found from /proc, not from the driver's own books."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def cgroup_dirs_left(handle: TaskHandle) -> list[str]:
    cgroup = handle.state.get("cgroup") or {"paths": {}}
    return [p for p in cgroup["paths"].values() if Path(p).exists()]


START_IN_ANOTHER_PROCESS = """
import asyncio, json, sys
from pathlib import Path
from steppe.drivers._base import TaskSpec
from steppe.drivers._exec import ExecDriver
from steppe.drivers._raw_exec import RawExecDriver

async def main() -> None:
    raw = json.loads(sys.argv[1])
    for key in ("alloc_dir", "task_dir", "stdout_path", "stderr_path"):
        raw[key] = Path(raw[key])
    driver = RawExecDriver(enabled=True) if raw.pop("driver") == "raw_exec" else ExecDriver()
    handle = await driver.start(TaskSpec(**raw))
    print(json.dumps([handle.driver, handle.task_id, handle.started_at, handle.state]))

asyncio.run(main())
"""


def start_in_another_process(driver: str, spec: TaskSpec) -> TaskHandle:
    """Starts a task from a short-lived process, as an agent that then exits would."""
    raw: dict[str, Any] = {
        "driver": driver,
        **{f: getattr(spec, f) for f in ("alloc_id", "job_id", "group", "task_name")},
        **{f: getattr(spec, f) for f in ("config", "env", "memory_mb", "cpu_mhz")},
        **{f: str(getattr(spec, f)) for f in ("alloc_dir", "task_dir")},
        **{f: str(getattr(spec, f)) for f in ("stdout_path", "stderr_path")},
    }
    done = subprocess.run(
        [sys.executable, "-c", START_IN_ANOTHER_PROCESS, json.dumps(raw)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    name, task_id, started_at, state = json.loads(done.stdout)
    return TaskHandle(name, task_id, started_at, state)
