"""The first process of an ``exec`` task's namespaces: ``python -m steppe.drivers._nsinit``.

``unshare`` starts it as pid 1 of fresh pid, mount, UTS and IPC namespaces; it builds the
task filesystem, chroots, joins the task's cgroup and then *becomes* the task with exec, so
the task itself is pid 1 and the kernel kills everything in the namespace when it ends.

It joins the cgroup last, right before exec: the interpreter's own memory is then never
charged to the task, and a task with a 10 MB limit is not OOM-killed before it starts.

It reports on the sync pipe: ``pid <host pid>`` first, then ``ok`` right before exec or
``error <reason>`` (unshare keeps its copy of the pipe open, so EOF cannot mean success).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from pathlib import Path

from steppe.drivers._cgroups import Cgroup
from steppe.drivers._executor import DEFAULT_PATH, ExecutorSpec
from steppe.drivers._taskfs import build_root

_RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ)


def _say(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())


def _enter(spec: ExecutorSpec, sync: int) -> tuple[str, dict[str, str]]:
    """Everything up to exec; returns the resolved program and its environment."""
    isolation = spec.isolation
    if isolation is None:
        raise RuntimeError("no isolation in the executor spec")
    _say(sync, f"pid {os.readlink('/proc/self')}")
    socket.sethostname(isolation.hostname)
    cgroup = Cgroup.from_state(spec.cgroup) if spec.cgroup else None
    procs = [os.open(p, os.O_WRONLY) for p in cgroup.procs_files()] if cgroup else []
    build_root(Path(isolation.root), Path(isolation.alloc_shared), isolation.ro_dirs)
    os.chroot(isolation.root)
    os.chdir(spec.cwd)
    env = dict(spec.env)
    env.setdefault("PATH", DEFAULT_PATH)
    program = spec.command
    if "/" not in program:
        found = shutil.which(program, path=env["PATH"])
        if found is None:
            raise RuntimeError(f"command {program!r} not found in the task's PATH")
        program = found
    elif not os.access(program, os.X_OK):
        raise RuntimeError(f"command {program!r} does not exist or is not executable")
    for fd in procs:
        os.write(fd, b"0")
        os.close(fd)
    if spec.user:
        from steppe.drivers._executor import _switch_user

        _switch_user(spec.user)
    return program, env


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m steppe.drivers._nsinit SPEC_JSON SYNC_FD", file=sys.stderr)
        return 2
    sync = int(argv[1])
    os.set_inheritable(sync, False)
    try:
        spec = ExecutorSpec.from_json(Path(argv[0]).read_text())
        program, env = _enter(spec, sync)
    except Exception as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _say(sync, f"error {reason}")
        return 127
    for signum in _RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    _say(sync, "ok")
    try:
        os.execve(program, [spec.command, *spec.args], env)
    except OSError as exc:
        print(f"exec {program}: {exc.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
