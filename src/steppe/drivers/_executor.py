"""The per-task supervisor: ``python -m steppe.drivers._executor SPEC_JSON``.

The agent may restart, crash or be upgraded while its tasks keep running, so a task is not
the agent's child: it is the child of this small process, which detaches into its own
session, starts the task with its output appended to the log files, waits for it, and
records how it ended in a status file. Any agent, the one that started the task or a later
one, learns the exit from that file (and the supervisor's exit from a pidfd).

Handshake: the agent reads one JSON line from the supervisor's stdout, either
``{"executor_pid", "executor_start", "task_pid", "pgid"}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steppe.drivers._base import ExitResult
from steppe.drivers._cgroups import Cgroup

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ)


@dataclass(frozen=True, slots=True)
class Isolation:
    """What the ``exec`` driver's namespace init builds before running the command."""

    root: str
    alloc_shared: str
    hostname: str
    ro_dirs: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    command: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    stdout: str
    stderr: str
    status_path: str
    user: str | None = None
    cgroup: dict[str, Any] | None = None
    isolation: Isolation | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ExecutorSpec:
        raw = json.loads(text)
        isolation = raw.pop("isolation", None)
        return cls(**raw, isolation=Isolation(**isolation) if isolation else None)


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot): with the pid, an
    identity that survives pid reuse. None once it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def read_status(path: Path) -> ExitResult | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return ExitResult(
        exit_code=int(raw.get("exit_code", -1)),
        signal=int(raw.get("signal", 0)),
        oom_killed=bool(raw.get("oom_killed", False)),
        error=str(raw.get("error", "")),
    )


def _write_status(path: Path, result: ExitResult) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**asdict(result), "finished_at": time.time()}))
    os.replace(tmp, path)


def _open_log(path: str) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def _switch_user(user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    os.initgroups(entry.pw_name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def _child_setup(spec: ExecutorSpec) -> None:
    """Runs in the forked child before exec (the supervisor is single-threaded)."""
    for signum in _RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    if spec.isolation is None:
        for procs in Cgroup.from_state(spec.cgroup).procs_files() if spec.cgroup else []:
            procs.write_text("0")
        if spec.user:
            _switch_user(spec.user)


def _start_task(spec: ExecutorSpec, spec_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Starts the task; returns it and the host pid of the task's own process."""
    out, err = _open_log(spec.stdout), _open_log(spec.stderr)
    env = dict(spec.env)
    env.setdefault("PATH", DEFAULT_PATH)
    if spec.isolation is None:
        argv = [spec.command, *spec.args]
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(spec),
        )
        return proc, proc.pid
    sync_r, sync_w = os.pipe()
    argv = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--kill-child"]
    argv += [sys.executable, "-m", "steppe.drivers._nsinit", str(spec_path), str(sync_w)]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            pass_fds=(sync_w,),
            preexec_fn=lambda: _child_setup(spec),
        )
    finally:
        os.close(sync_w)
    task_pid, error = 0, "the namespace init exited before starting the task"
    with os.fdopen(sync_r, "r") as sync:
        for line in sync:
            word, _, rest = line.strip().partition(" ")
            if word == "pid":
                task_pid = int(rest)
            elif word == "error":
                error = rest
                break
            elif word == "ok":
                return proc, task_pid
    proc.wait()
    raise RuntimeError(error)


def _result(code: int, cgroup: Cgroup | None) -> ExitResult:
    signum = -code if code < 0 else 0
    exit_code = 128 + signum if signum else code
    oom = False
    if cgroup is not None:
        kills = cgroup.oom_kills()
        if kills is None:
            oom = signum == signal.SIGKILL and cgroup.memory_failcnt() > 0
        else:
            oom = kills > 0
    return ExitResult(exit_code=exit_code, signal=signum, oom_killed=oom)


def _supervise(spec_path: Path, report: int) -> None:
    spec = ExecutorSpec.from_json(spec_path.read_text())
    cgroup = Cgroup.from_state(spec.cgroup) if spec.cgroup else None
    try:
        proc, task_pid = _start_task(spec, spec_path)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        os.write(report, (json.dumps({"error": reason}) + "\n").encode())
        return
    me = os.getpid()
    hello = {
        "executor_pid": me,
        "executor_start": process_start_time(me),
        "task_pid": task_pid,
        "task_start": process_start_time(task_pid),
        "pgid": proc.pid,
    }
    os.write(report, (json.dumps(hello) + "\n").encode())
    os.close(report)
    result = _result(proc.wait(), cgroup)
    if cgroup is not None:
        cgroup.kill_all()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _write_status(Path(spec.status_path), result)


def main(argv: list[str]) -> int:
    """Forks once more so the supervisor is nobody's child in the agent and the agent
    reaps only this short-lived first process."""
    if len(argv) != 1:
        print("usage: python -m steppe.drivers._executor SPEC_JSON", file=sys.stderr)
        return 2
    if os.fork():
        return 0
    os.setsid()
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    os.chdir("/")
    report = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        _supervise(Path(argv[0]), report)
    except Exception as exc:  # the agent must hear why, not a silent EOF
        with contextlib.suppress(OSError):
            os.write(report, (json.dumps({"error": f"executor: {exc}"}) + "\n").encode())
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
