"""What ``raw_exec`` and ``exec`` share: tasks run under a detached supervisor process.

The agent never owns a task process. It starts ``steppe.drivers._executor``, which detaches
and supervises the task, and keeps only a handle (pids, the status file, the cgroup). Any
agent holding that handle can wait for the task, signal it, stop it or clean up after it,
which is what lets tasks outlive an agent restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal as signals
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from steppe.drivers._base import Driver, ExitResult, TaskHandle, TaskSpec
from steppe.drivers._cgroups import Cgroup
from steppe.drivers._executor import ExecutorSpec, Isolation, process_start_time, read_status
from steppe.errors import DriverError

HANDSHAKE_TIMEOUT = 30.0
KILL_GRACE = 10.0
"""How long a SIGKILLed task may take to be reaped before stop gives up."""
_ALLOWED_KEYS = ("command", "args")


def parse_signal(name: str) -> int:
    """``SIGINT``, ``INT``, ``sigint`` or ``2`` -> 2, as kill_signal may be written."""
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signals.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise DriverError(f"unknown signal {name!r}") from None


def validate_command_config(config: dict[str, Any]) -> list[str]:
    if not isinstance(config, dict):
        return ["config: must be a block with at least `command`"]
    problems: list[str] = []
    command = config.get("command")
    if command is None:
        problems.append("config.command: required, the program to run")
    elif not isinstance(command, str) or not command.strip():
        problems.append("config.command: must be a non-empty string")
    args = config.get("args", [])
    if not isinstance(args, list):
        problems.append("config.args: must be a list of strings")
    else:
        problems += [
            f"config.args[{i}]: must be a string, got {type(a).__name__}"
            for i, a in enumerate(args)
            if not isinstance(a, str)
        ]
    problems += [
        f"config.{key}: unknown field; allowed: {', '.join(_ALLOWED_KEYS)}"
        for key in config
        if key not in _ALLOWED_KEYS
    ]
    return problems


def _user_problems(user: str) -> list[str]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return [f"user: {user!r} does not exist on this node"]
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        return [f"user: running as {user!r} needs the agent to run as root"]
    return []


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class SupervisedDriver(Driver):
    """Start / wait / stop / destroy / recover over the executor; subclasses decide the
    isolation and the cgroup.

    ``task_root`` is the directory holding the client's alloc dirs; with it,
    :meth:`list_tasks` finds this driver's tasks there (running or exited, not yet
    destroyed) so the client can remove those whose allocation is gone. Without it the
    driver lists nothing rather than guess, since another agent's tasks may share the host.
    """

    task_root: Path | None = None

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        return validate_command_config(config)

    def _isolation(self, spec: TaskSpec) -> Isolation | None:
        return None

    def _cgroup(self, spec: TaskSpec, name: str) -> Cgroup | None:
        """The task's cgroup, created and limited; None to rely on the process group."""
        return None

    def _env(self, spec: TaskSpec) -> dict[str, str]:
        return dict(spec.env)

    def _cwd(self, spec: TaskSpec) -> str:
        return str(spec.task_dir)

    async def start(self, spec: TaskSpec) -> TaskHandle:
        problems = self.validate_config(spec.config)
        problems += _user_problems(spec.user) if spec.user else []
        if problems:
            raise DriverError(f"{self.name}: task {spec.task_name}: {'; '.join(problems)}")
        suffix = secrets.token_hex(3)
        name = f"{_safe(spec.alloc_id)}-{_safe(spec.task_name)}-{suffix}"
        state_dir = spec.alloc_dir / ".executor" / f"{_safe(spec.task_name)}-{suffix}"
        spec.task_dir.mkdir(parents=True, exist_ok=True)
        cgroup = self._cgroup(spec, name)
        isolation = self._isolation(spec)
        executor_spec = ExecutorSpec(
            command=spec.config["command"],
            args=list(spec.config.get("args", [])),
            env=self._env(spec),
            cwd=self._cwd(spec),
            stdout=str(spec.stdout_path),
            stderr=str(spec.stderr_path),
            status_path=str(state_dir / "status.json"),
            user=spec.user,
            cgroup=cgroup.to_state() if cgroup else None,
            isolation=isolation,
        )
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            (state_dir / "spec.json").write_text(executor_spec.to_json())
            hello = await self._launch(state_dir / "spec.json", state_dir / "executor.log")
            if "error" in hello:
                raise DriverError(f"{self.name}: task {spec.task_name}: {hello['error']}")
        except BaseException:
            await asyncio.to_thread(_undo_start, cgroup, isolation, state_dir)
            raise
        state = {
            "alloc_id": spec.alloc_id,
            "task_name": spec.task_name,
            **{k: hello.get(k) for k in ("executor_pid", "executor_start", "task_start")},
            **{k: int(hello[k]) for k in ("task_pid", "pgid")},
            "state_dir": str(state_dir),
            "status_path": executor_spec.status_path,
            "cgroup": executor_spec.cgroup,
            "root": isolation.root if isolation else None,
            "host_dirs": isolation.ro_dirs if isolation else [],
        }
        handle = TaskHandle(driver=self.name, task_id=name, started_at=time.time(), state=state)
        _save_handle(state_dir, handle)
        return handle

    async def _launch(self, spec_path: Path, log_path: Path) -> dict[str, Any]:
        """Runs in a thread: the handshake is one line, and a blocking read of it keeps
        no event-loop transport alive past a failed start."""
        return await asyncio.to_thread(_handshake, spec_path, log_path)

    @staticmethod
    def _executor_alive(handle: TaskHandle) -> bool:
        pid, start = handle.state.get("executor_pid"), handle.state.get("executor_start")
        return bool(pid) and process_start_time(int(pid)) == start  # type: ignore[arg-type]

    @staticmethod
    def _status(handle: TaskHandle) -> ExitResult | None:
        return read_status(Path(handle.state["status_path"]))

    async def wait(self, handle: TaskHandle) -> ExitResult:
        result = self._status(handle)
        if result is not None:
            return result
        await self._wait_executor(handle)
        result = self._status(handle)
        if result is None:
            return ExitResult(exit_code=-1, error="the task's supervisor ended without a status")
        return result

    async def _wait_executor(self, handle: TaskHandle) -> None:
        pid = int(handle.state["executor_pid"])
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        except OSError as exc:
            raise DriverError(f"{self.name}: cannot watch pid {pid}: {exc.strerror}") from exc
        try:
            if not self._executor_alive(handle):
                return
            loop = asyncio.get_running_loop()
            exited: asyncio.Future[None] = loop.create_future()

            def on_exit() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(fd, on_exit)
            try:
                await exited
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)

    def _cgroup_of(self, handle: TaskHandle) -> Cgroup | None:
        raw = handle.state.get("cgroup")
        return Cgroup.from_state(raw) if raw else None

    @staticmethod
    def _task_alive(handle: TaskHandle) -> bool:
        pid, start = handle.state.get("task_pid"), handle.state.get("task_start")
        return bool(pid) and start is not None and process_start_time(int(pid)) == start  # type: ignore[arg-type]

    async def _kill_tree(self, handle: TaskHandle) -> None:
        """The process group is only trusted while its supervisor or leader lives: after
        both are gone its id may belong to someone else."""
        cgroup = self._cgroup_of(handle)
        if self._executor_alive(handle) or self._task_alive(handle):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(handle.state["pgid"]), signals.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(handle.state["task_pid"]), signals.SIGKILL)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.kill_all)

    async def signal(self, handle: TaskHandle, signal: str) -> None:
        signum = parse_signal(signal)
        if self._status(handle) is None and self._executor_alive(handle):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(handle.state["task_pid"]), signum)

    async def stop(self, handle: TaskHandle, signal: str, timeout: float) -> None:
        """The signal goes to the task's main process (Nomad's semantics); whatever is left
        of the tree after it exits or after ``timeout`` is SIGKILLed."""
        await self.signal(handle, signal)
        if self._status(handle) is None and self._executor_alive(handle):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(handle), max(timeout, 0.0))
        await self._kill_tree(handle)
        try:
            await asyncio.wait_for(self.wait(handle), KILL_GRACE)
        except TimeoutError:
            raise DriverError(
                f"{self.name}: task {handle.task_id} still running {KILL_GRACE}s after SIGKILL"
            ) from None

    async def destroy(self, handle: TaskHandle) -> None:
        if self._status(handle) is None and self._executor_alive(handle):
            await self.stop(handle, "SIGKILL", 0)
        await self._kill_tree(handle)
        left: list[str] = []
        cgroup = self._cgroup_of(handle)
        if cgroup is not None:
            left = await asyncio.to_thread(_remove_cgroup, cgroup)
        root = handle.state.get("root")
        if root:
            from steppe.drivers._taskfs import remove_mountpoints, unmount_under

            unmount_under(Path(root))
            remove_mountpoints(Path(root), list(handle.state.get("host_dirs", [])))
        state_dir = Path(handle.state["state_dir"])
        shutil.rmtree(state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            state_dir.parent.rmdir()
        if left:
            raise DriverError(f"{self.name}: cannot remove cgroup {'; '.join(left)}")

    async def list_tasks(self) -> list[TaskHandle]:
        return _load_handles(self.task_root, self.name) if self.task_root else []

    async def recover(self, handle: TaskHandle) -> bool:
        return self._recoverable(handle)

    def _recoverable(self, handle: TaskHandle) -> bool:
        if not {"executor_pid", "status_path", "state_dir"} <= handle.state.keys():
            return False
        if not Path(handle.state["state_dir"]).is_dir():
            return False
        return self._status(handle) is not None or self._executor_alive(handle)


def _remove_cgroup(cgroup: Cgroup, deadline: float = 5.0) -> list[str]:
    """rmdir fails while the kernel is still tearing killed processes down."""
    end = time.monotonic() + deadline
    while True:
        cgroup.kill_all()
        left = cgroup.remove()
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.02)


def _save_handle(state_dir: Path, handle: TaskHandle) -> None:
    raw = {"driver": handle.driver, "task_id": handle.task_id, "started_at": handle.started_at}
    (state_dir / "handle.json").write_text(json.dumps({**raw, "state": handle.state}))


def _load_handles(task_root: Path, driver: str) -> list[TaskHandle]:
    handles: list[TaskHandle] = []
    for path in sorted(task_root.glob("*/.executor/*/handle.json")):
        try:
            raw = json.loads(path.read_text())
            handle = TaskHandle(raw["driver"], raw["task_id"], raw["started_at"], raw["state"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if handle.driver == driver:
            handles.append(handle)
    return handles


def _handshake(spec_path: Path, log_path: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "steppe.drivers._executor", str(spec_path)]
    try:
        with log_path.open("ab") as log:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=HANDSHAKE_TIMEOUT,
                check=False,
            )
    except subprocess.TimeoutExpired:
        return {"error": f"the task's supervisor did not start in {HANDSHAKE_TIMEOUT}s"}
    except OSError as exc:
        return {"error": f"cannot start the task's supervisor: {exc.strerror}"}
    line = done.stdout.split(b"\n", 1)[0]
    if not line:
        return {"error": f"the task's supervisor died during start-up (see {log_path})"}
    hello: dict[str, Any] = json.loads(line)
    return hello


def _undo_start(cgroup: Cgroup | None, isolation: Isolation | None, state_dir: Path) -> None:
    if cgroup is not None:
        _remove_cgroup(cgroup)
    if isolation is not None:
        from steppe.drivers._taskfs import remove_mountpoints, unmount_under

        unmount_under(Path(isolation.root))
        remove_mountpoints(Path(isolation.root), isolation.ro_dirs)
    shutil.rmtree(state_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        state_dir.parent.rmdir()
