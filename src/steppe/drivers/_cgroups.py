"""Control groups for task drivers, over cgroup v1 (one hierarchy per controller) or v2.

A task's cgroup is what makes its limits real and what lets the driver find every process
the task ever spawned, including ones that left its process group or session. Cgroups live
under a ``steppe`` parent: on v1 it sits inside the agent's own cgroup of each hierarchy, so
tasks stay inside whatever the agent is accounted to (a container, a systemd unit); on v2 the
no-internal-processes rule forbids enabling controllers below a cgroup that has processes, so
the parent sits at the hierarchy's root, as Nomad's ``nomad.slice`` does.

A :class:`Cgroup` is a plain value (paths only) so it can travel in a task handle and be
rebuilt by an agent that did not create it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steppe.errors import DriverError

V1_TASK_CONTROLLERS = ("memory", "cpu", "cpuacct", "freezer")
"""What an isolated task gets on v1; memory and cpu are required, the rest optional."""

_UNIFIED = "unified"


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy and where the agent itself sits in it."""

    mountpoint: Path
    controllers: frozenset[str]
    own_path: str = "/"


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """The cgroup hierarchies this host offers, as seen by this process."""

    version: int
    hierarchies: dict[str, Hierarchy] = field(default_factory=dict)
    """v1: controller name -> its hierarchy; v2: ``"unified"`` -> the cgroup2 mount."""

    def has(self, *controllers: str) -> bool:
        if self.version == 2:
            unified = self.hierarchies.get(_UNIFIED)
            return unified is not None and all(c in unified.controllers for c in controllers)
        return all(c in self.hierarchies for c in controllers)


def _parse_mountinfo(text: str) -> list[tuple[Path, str, str, str]]:
    """(mountpoint, mount root, fstype, super options) of every cgroup mount."""
    mounts: list[tuple[Path, str, str, str]] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        mounts.append((Path(mountpoint), fields[3], tail[0], tail[2]))
    return mounts


def _own_paths(text: str) -> dict[str, str]:
    """Controller (or ``"unified"``) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[_UNIFIED] = path
        for name in controllers.split(","):
            if name:
                paths[name.removeprefix("name=")] = path
    return paths


def _relative(own: str, mount_root: str) -> str:
    if mount_root != "/" and own.startswith(mount_root):
        own = own[len(mount_root) :] or "/"
    return own


def detect(
    mountinfo: Path = Path("/proc/self/mountinfo"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> CgroupLayout | None:
    """v1 when the memory and cpu controllers are mounted as v1 hierarchies (hybrid hosts
    keep their controllers there), otherwise v2 if a cgroup2 mount exists; None if neither."""
    try:
        mounts = _parse_mountinfo(mountinfo.read_text())
        own = _own_paths(self_cgroup.read_text())
    except OSError:
        return None
    v1: dict[str, Hierarchy] = {}
    unified: Hierarchy | None = None
    for mountpoint, root, fstype, options in mounts:
        if fstype == "cgroup":
            names = frozenset(o for o in options.split(",") if o not in ("rw", "ro"))
            for name in names:
                path = _relative(own.get(name, "/"), root)
                v1.setdefault(name, Hierarchy(mountpoint, names, path))
        elif unified is None:
            try:
                available = (mountpoint / "cgroup.controllers").read_text().split()
            except OSError:
                available = []
            path = _relative(own.get(_UNIFIED, "/"), root)
            unified = Hierarchy(mountpoint, frozenset(available), path)
    if "memory" in v1 and "cpu" in v1:
        return CgroupLayout(1, v1)
    if unified is not None:
        return CgroupLayout(2, {_UNIFIED: unified})
    if v1:
        return CgroupLayout(1, v1)
    return None


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise DriverError(f"cgroup: cannot write {value!r} to {path}: {exc.strerror}") from exc


def _read_kv(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
    return values


def weight_from_shares(shares: int) -> int:
    """cgroup v2 ``cpu.weight`` equivalent to v1 ``cpu.shares`` (the runc/systemd mapping)."""
    return max(1, min(10_000, 1 + ((shares - 2) * 9999) // 262_142))


@dataclass(frozen=True, slots=True)
class Cgroup:
    """One task's cgroup: a directory per v1 hierarchy, or one v2 directory."""

    version: int
    paths: dict[str, str]
    """v1: controller -> directory; v2: ``"unified"`` -> directory."""

    @classmethod
    def plan(
        cls,
        layout: CgroupLayout,
        name: str,
        controllers: Iterable[str],
        parent: str | None = None,
    ) -> Cgroup:
        """Where ``name`` goes; ``parent`` is relative to the agent's own cgroup (v1) or to
        the root (v2, or any parent starting with ``/``); default ``steppe``."""
        paths: dict[str, str] = {}
        for controller in controllers if layout.version == 1 else (_UNIFIED,):
            hierarchy = layout.hierarchies.get(controller)
            if hierarchy is None:
                continue
            if parent is None:
                base = hierarchy.own_path if layout.version == 1 else "/"
                relative = f"{base.rstrip('/')}/steppe"
            elif parent.startswith("/"):
                relative = parent
            else:
                relative = f"{hierarchy.own_path.rstrip('/')}/{parent}"
            paths[controller] = str(hierarchy.mountpoint / relative.strip("/") / name)
        return cls(layout.version, paths)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Cgroup:
        return cls(int(state["version"]), {str(k): str(v) for k, v in state["paths"].items()})

    def to_state(self) -> dict[str, Any]:
        return {"version": self.version, "paths": dict(self.paths)}

    def dirs(self) -> list[Path]:
        """Each directory once (v1 controllers mounted together share one)."""
        return [Path(p) for p in dict.fromkeys(self.paths.values())]

    def _dir(self, controller: str) -> Path | None:
        path = self.paths.get(_UNIFIED if self.version == 2 else controller)
        return Path(path) if path else None

    def create(self) -> None:
        for directory in self.dirs():
            if self.version == 2:
                self._enable_v2_controllers(directory)
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DriverError(f"cgroup: cannot create {directory}: {exc.strerror}") from exc

    @staticmethod
    def _enable_v2_controllers(directory: Path) -> None:
        """Controllers must be switched on in the subtree_control of every ancestor, from
        the hierarchy's root down, creating the ``steppe`` parent on the way."""
        wanted = ("memory", "cpu", "pids")
        ancestors = list(reversed(directory.parents))
        roots = [i for i, p in enumerate(ancestors) if (p / "cgroup.controllers").exists()]
        for ancestor in ancestors[roots[0] :] if roots else []:
            ancestor.mkdir(exist_ok=True)
            try:
                available = (ancestor / "cgroup.controllers").read_text().split()
                enabled = (ancestor / "cgroup.subtree_control").read_text().split()
            except OSError:
                continue
            missing = [c for c in wanted if c in available and c not in enabled]
            if missing:
                _write(ancestor / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def set_memory(self, limit_mb: int, soft_mb: int = 0) -> None:
        directory = self._dir("memory")
        if directory is None:
            return
        limit = str(limit_mb * 1024 * 1024)
        if self.version == 1:
            _write(directory / "memory.limit_in_bytes", limit)
            if (directory / "memory.memsw.limit_in_bytes").exists():
                with contextlib.suppress(DriverError):
                    _write(directory / "memory.memsw.limit_in_bytes", limit)
            if soft_mb:
                _write(directory / "memory.soft_limit_in_bytes", str(soft_mb * 1024 * 1024))
            return
        _write(directory / "memory.max", limit)
        for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if (directory / name).exists():
                _write(directory / name, value)
        if soft_mb and (directory / "memory.low").exists():
            _write(directory / "memory.low", str(soft_mb * 1024 * 1024))

    def set_cpu(self, shares: int, quota_us: int, period_us: int) -> None:
        directory = self._dir("cpu")
        if directory is None:
            return
        if self.version == 1:
            _write(directory / "cpu.shares", str(shares))
            _write(directory / "cpu.cfs_period_us", str(period_us))
            _write(directory / "cpu.cfs_quota_us", str(quota_us))
            return
        _write(directory / "cpu.weight", str(weight_from_shares(shares)))
        _write(directory / "cpu.max", f"{quota_us} {period_us}")

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs()]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in procs.read_text().split())
        return found

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs())

    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer took from this cgroup; None when the
        kernel does not count (v1 before 4.13)."""
        directory = self._dir("memory")
        if directory is None:
            return None
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return _read_kv(directory / name).get("oom_kill")

    def memory_failcnt(self) -> int:
        """v1's count of allocations that hit the limit: with a SIGKILL, the sign of an OOM
        kill on kernels that do not count those."""
        directory = self._dir("memory")
        if directory is None or self.version == 2:
            return 0
        return int(_read_first(directory / "memory.failcnt") or 0)

    def cpu_usage_ns(self) -> int:
        if self.version == 1:
            directory = self._dir("cpuacct")
            return int(_read_first(directory / "cpuacct.usage") or 0) if directory else 0
        directory = self._dir("cpu")
        return _read_kv(directory / "cpu.stat").get("usage_usec", 0) * 1000 if directory else 0

    def cpu_stat(self) -> dict[str, int]:
        """``nr_periods`` / ``nr_throttled`` of the CFS bandwidth controller."""
        directory = self._dir("cpu")
        return _read_kv(directory / "cpu.stat") if directory else {}

    def signal_all(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def kill_all(self, deadline: float = 5.0) -> bool:
        """SIGKILLs every process, frozen first so none can fork a survivor between
        reading the list and the kill; True once the cgroup is empty."""
        if self.version == 2 and (self.dirs()[0] / "cgroup.kill").exists():
            with contextlib.suppress(DriverError):
                _write(self.dirs()[0] / "cgroup.kill", "1")
        end = time.monotonic() + deadline
        while self.pids():
            frozen = self._freeze(True)
            self.signal_all(signal.SIGKILL)
            if frozen:
                self._freeze(False)
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def _freeze(self, frozen: bool) -> bool:
        if self.version == 1:
            directory = self._dir("freezer")
            target, value = "freezer.state", "FROZEN" if frozen else "THAWED"
        else:
            directory = self._dir(_UNIFIED)
            target, value = "cgroup.freeze", "1" if frozen else "0"
        if directory is None or not (directory / target).exists():
            return False
        try:
            (directory / target).write_text(value)
        except OSError:
            return False
        return True

    def remove(self) -> list[str]:
        """Removes every directory; returns the ones that could not be (still populated)."""
        left: list[str] = []
        for directory in self.dirs():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                left.append(f"{directory}: {exc.strerror}")
        return left


def _read_first(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError:
        return None
