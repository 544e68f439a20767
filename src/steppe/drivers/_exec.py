"""``exec``: a command isolated the way Nomad's exec driver isolates it.

Own pid, mount, UTS and IPC namespaces; chrooted into the task directory, where the host's
binaries and libraries are bound read-only and ``/alloc``, ``/local``, ``/secrets``, a
private ``/tmp``, ``/proc`` and a minimal ``/dev`` appear; its own cgroup with the task's
memory limit (OOM kills reported as such) and CPU share plus CFS quota.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from steppe.drivers._base import TaskSpec
from steppe.drivers._cgroups import V1_TASK_CONTROLLERS, Cgroup, CgroupLayout, detect
from steppe.drivers._cpu import CFS_PERIOD_US, cfs_quota_us, cpu_shares
from steppe.drivers._executor import Isolation
from steppe.drivers._supervised import SupervisedDriver
from steppe.drivers._taskfs import HOST_DIRS
from steppe.errors import DriverError


class ExecDriver(SupervisedDriver):
    name = "exec"
    fs_isolation = "chroot"

    def __init__(
        self,
        *,
        cgroup_parent: str | None = None,
        host_dirs: tuple[str, ...] = HOST_DIRS,
        mhz_per_core: float | None = None,
        cgroup_layout: CgroupLayout | None = None,
        task_root: Path | None = None,
    ) -> None:
        """``cgroup_parent``: see :meth:`Cgroup.plan`; ``host_dirs``: bound read-only into
        every task's root when they exist; ``mhz_per_core`` overrides /proc/cpuinfo for the
        CFS quota; ``cgroup_layout`` replaces detection; ``task_root``: see
        :class:`SupervisedDriver`."""
        self._cgroup_parent = cgroup_parent
        self._host_dirs = host_dirs
        self._mhz_per_core = mhz_per_core
        self._layout: CgroupLayout | None = cgroup_layout
        self.task_root = task_root

    def _usable_layout(self) -> CgroupLayout | None:
        if self._layout is None:
            layout = detect()
            self._layout = layout if layout is not None and layout.has("memory", "cpu") else None
        return self._layout

    async def fingerprint(self) -> dict[str, str] | None:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            return None
        return {"driver.exec": "1"} if self._usable_layout() is not None else None

    def _cgroup(self, spec: TaskSpec, name: str) -> Cgroup | None:
        layout = self._usable_layout()
        if layout is None:
            raise DriverError("exec: needs root and the memory and cpu cgroup controllers")
        cgroup = Cgroup.plan(layout, name, V1_TASK_CONTROLLERS, self._cgroup_parent)
        cgroup.create()
        try:
            hard = spec.memory_max_mb if spec.memory_max_mb > spec.memory_mb else spec.memory_mb
            soft = spec.memory_mb if hard != spec.memory_mb else 0
            cgroup.set_memory(hard, soft)
            quota = cfs_quota_us(spec.cpu_mhz, self._mhz_per_core)
            cgroup.set_cpu(cpu_shares(spec.cpu_mhz), quota, CFS_PERIOD_US)
        except DriverError:
            cgroup.remove()
            raise
        return cgroup

    def _isolation(self, spec: TaskSpec) -> Isolation:
        existing = [d for d in self._host_dirs if os.path.lexists(d)]
        return Isolation(
            root=str(spec.task_dir),
            alloc_shared=str(spec.alloc_dir / "alloc"),
            hostname=spec.alloc_id.split("-")[0][:63] or spec.task_name[:63],
            ro_dirs=existing,
        )

    def _cwd(self, spec: TaskSpec) -> str:
        return "/"

    def _env(self, spec: TaskSpec) -> dict[str, str]:
        """The client writes host paths (NOMAD_TASK_DIR...); inside the chroot they are
        ``/local``, ``/secrets`` and ``/alloc``."""
        inside = {
            str(spec.alloc_dir / "alloc"): "/alloc",
            str(spec.task_dir / "local"): "/local",
            str(spec.task_dir / "secrets"): "/secrets",
            str(spec.task_dir): "/",
        }
        return {key: inside.get(str(Path(v)) if v else v, v) for key, v in spec.env.items()}
