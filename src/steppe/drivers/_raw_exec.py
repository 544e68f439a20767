"""``raw_exec``: a command with its args and env, run as the agent's user with no isolation.

For trusted commands only, so it is off unless the client config enables it (``-dev`` does).
The task still gets a process group and, when the agent may create cgroups, a tracking cgroup
(freezer on v1): stopping a task must take every process it spawned with it, including ones
that started their own session and so left the process group.
"""

from __future__ import annotations

import os
from pathlib import Path

from steppe.drivers._base import TaskSpec
from steppe.drivers._cgroups import Cgroup, CgroupLayout, detect
from steppe.drivers._supervised import SupervisedDriver
from steppe.errors import DriverError


class RawExecDriver(SupervisedDriver):
    name = "raw_exec"
    fs_isolation = "none"

    def __init__(
        self,
        enabled: bool = False,
        *,
        use_cgroups: bool | None = None,
        cgroup_parent: str | None = None,
        cgroup_layout: CgroupLayout | None = None,
        task_root: Path | None = None,
    ) -> None:
        """``use_cgroups``: None tracks tasks in a cgroup when running as root and one is
        available, True requires it, False relies on the process group alone.
        ``cgroup_layout`` replaces detection (tests, unusual mounts); ``task_root``: see
        :class:`SupervisedDriver`."""
        self.enabled = enabled
        self._use_cgroups = use_cgroups
        self._cgroup_parent = cgroup_parent
        self._layout: CgroupLayout | None = cgroup_layout
        self.task_root = task_root

    async def fingerprint(self) -> dict[str, str] | None:
        return {"driver.raw_exec": "1"} if self.enabled else None

    def _tracking_layout(self) -> CgroupLayout | None:
        if self._use_cgroups is False:
            return None
        if self._layout is None:
            layout = detect() if os.geteuid() == 0 else None
            usable = layout is not None and (layout.version == 2 or layout.has("freezer"))
            self._layout = layout if usable else None
        if self._layout is None and self._use_cgroups:
            raise DriverError("raw_exec: no usable cgroup (needs root, and freezer or v2)")
        return self._layout

    def _cgroup(self, spec: TaskSpec, name: str) -> Cgroup | None:
        layout = self._tracking_layout()
        if layout is None:
            return None
        cgroup = Cgroup.plan(layout, name, ("freezer",), self._cgroup_parent)
        cgroup.create()
        return cgroup
