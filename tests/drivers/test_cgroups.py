"""Cgroup detection and paths (pure, over sample /proc files) and real cgroup operations."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.drivers._tasks import TaskRig, alive, cgroup_dirs_left, descendants
from tests.support.waiting import wait_until

from steppe.drivers._cgroups import (
    V1_TASK_CONTROLLERS,
    Cgroup,
    CgroupLayout,
    Hierarchy,
    detect,
    weight_from_shares,
)
from steppe.drivers._raw_exec import RawExecDriver
from steppe.drivers._supervised import parse_signal
from steppe.errors import DriverError

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = """\
9:name=systemd:/
6:freezer:/
4:memory:/sandbox/abc
2:cpuacct:/
1:cpu:/
0::/
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_hybrid_host_uses_v1_and_nests_under_the_agents_cgroup(tmp_path: Path) -> None:
    layout = detect(write(tmp_path, "mi", HYBRID_MOUNTINFO), write(tmp_path, "cg", HYBRID_SELF))
    assert layout is not None
    assert layout.version == 1
    assert layout.has("memory", "cpu", "cpuacct", "freezer")
    assert not layout.has("pids")
    cgroup = Cgroup.plan(layout, "a1-web", V1_TASK_CONTROLLERS)
    assert cgroup.paths == {
        "memory": "/sys/fs/cgroup/memory/sandbox/abc/steppe/a1-web",
        "cpu": "/sys/fs/cgroup/cpu/steppe/a1-web",
        "cpuacct": "/sys/fs/cgroup/cpuacct/steppe/a1-web",
        "freezer": "/sys/fs/cgroup/freezer/steppe/a1-web",
    }
    absolute = Cgroup.plan(layout, "t", ("memory",), parent="/nomad")
    assert absolute.paths == {"memory": "/sys/fs/cgroup/memory/nomad/t"}
    assert Cgroup.from_state(cgroup.to_state()) == cgroup


def test_shared_v1_mount_is_one_directory(tmp_path: Path) -> None:
    mountinfo = "32 31 0:29 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    mountinfo += "35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory\n"
    layout = detect(write(tmp_path, "mi", mountinfo), write(tmp_path, "cg", "1:cpu,cpuacct:/\n"))
    assert layout is not None
    cgroup = Cgroup.plan(layout, "t", V1_TASK_CONTROLLERS)
    assert [str(d) for d in cgroup.dirs()] == ["/cg/memory/steppe/t", "/cg/cpu,cpuacct/steppe/t"]


def test_pure_v2_host_uses_the_unified_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mountinfo = f"30 23 0:26 / {root} rw - cgroup2 cgroup2 rw,nsdelegate\n"
    layout = detect(write(tmp_path, "mi", mountinfo), write(tmp_path, "cg", "0::/user.slice/x\n"))
    assert layout is not None
    assert (layout.version, layout.has("memory", "cpu")) == (2, True)
    assert Cgroup.plan(layout, "t", V1_TASK_CONTROLLERS).paths == {"unified": f"{root}/steppe/t"}


def test_no_cgroups_mounted(tmp_path: Path) -> None:
    mountinfo = "23 1 0:21 / /proc rw - proc proc rw\n"
    assert detect(write(tmp_path, "mi", mountinfo), write(tmp_path, "cg", "")) is None
    assert detect(tmp_path / "missing", tmp_path / "missing") is None


def test_cpu_weight_follows_shares() -> None:
    assert [weight_from_shares(s) for s in (2, 1024, 262_144)] == [1, 39, 10_000]


def test_signal_names() -> None:
    assert parse_signal("SIGINT") == parse_signal("int") == parse_signal("2") == signal.SIGINT
    with pytest.raises(DriverError, match="unknown signal 'SIGWHAT'"):
        parse_signal("SIGWHAT")


@pytest.fixture
def real_v1() -> Iterator[Cgroup]:
    layout = detect()
    if os.geteuid() != 0 or layout is None or layout.version != 1:
        pytest.skip("needs root on a cgroup v1 host")
    cgroup = Cgroup.plan(layout, f"test-{uuid.uuid4().hex[:8]}", V1_TASK_CONTROLLERS)
    cgroup.create()
    try:
        yield cgroup
    finally:
        cgroup.kill_all()
        cgroup.remove()


def test_real_v1_limits_membership_kill_and_removal(real_v1: Cgroup) -> None:
    real_v1.set_memory(48, soft_mb=16)
    real_v1.set_cpu(shares=300, quota_us=20_000, period_us=100_000)
    memory = Path(real_v1.paths["memory"])
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(48 << 20)
    assert (memory / "memory.soft_limit_in_bytes").read_text().strip() == str(16 << 20)
    assert (Path(real_v1.paths["cpu"]) / "cpu.cfs_quota_us").read_text().strip() == "20000"
    procs = real_v1.procs_files()

    def join() -> None:
        for path in procs:
            path.write_text("0")

    proc = subprocess.Popen(["sleep", "1000"], preexec_fn=join)
    try:
        assert real_v1.pids() == {proc.pid}
        assert real_v1.oom_kills() == 0
        assert real_v1.kill_all()
        assert proc.wait() == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    assert real_v1.remove() == []
    assert not real_v1.exists()


def unified_layout() -> CgroupLayout | None:
    """This machine's cgroup2 mount (hybrid: no controllers) still tracks and kills."""
    layout = detect()
    if os.geteuid() != 0 or layout is None:
        return None
    if layout.version == 2:
        return layout
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].startswith("cgroup2 "):
            mountpoint = Path(fields[0].split()[4])
            return CgroupLayout(2, {"unified": Hierarchy(mountpoint, frozenset(), "/")})
    return None


@pytest.fixture
async def v2_rig(tmp_path: Path) -> AsyncIterator[TaskRig]:
    layout = unified_layout()
    if layout is None:
        pytest.skip("needs root and a cgroup2 mount")
    rig = TaskRig(RawExecDriver(enabled=True, use_cgroups=True, cgroup_layout=layout), tmp_path)
    try:
        yield rig
    finally:
        await rig.cleanup()


async def test_raw_exec_tracks_its_tree_in_a_v2_cgroup(v2_rig: TaskRig) -> None:
    handle = await v2_rig.start(v2_rig.sh("setsid sleep 1000 & sleep 1000 & wait"))
    assert handle.state["cgroup"]["version"] == 2
    task_pid = handle.state["task_pid"]
    tree = wait_until(lambda: d if len(d := descendants(task_pid)) == 2 else None)
    assert Cgroup.from_state(handle.state["cgroup"]).pids() == {task_pid, *tree}
    await v2_rig.driver.stop(handle, "SIGKILL", 0)
    wait_until(lambda: not any(alive(p) for p in {task_pid, *tree}), what="tree gone")
    await v2_rig.driver.destroy(handle)
    assert cgroup_dirs_left(handle) == []


def test_v2_enables_controllers_from_the_root_and_writes_limits(tmp_path: Path) -> None:
    """On a fake hierarchy (plain files): what a v2 host would be told, in order."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu\n")
    cgroup = Cgroup(2, {"unified": str(root / "steppe" / "t")})
    cgroup.create()
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids"
    cgroup.set_memory(32)
    cgroup.set_cpu(shares=100, quota_us=5000, period_us=100_000)
    task = root / "steppe" / "t"
    assert (task / "memory.max").read_text() == str(32 << 20)
    assert (task / "cpu.max").read_text() == "5000 100000"
    assert (task / "cpu.weight").read_text() == str(weight_from_shares(100))
    (task / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    (task / "cpu.stat").write_text("usage_usec 1500\nnr_periods 4\nnr_throttled 2\n")
    assert (cgroup.oom_kills(), cgroup.cpu_usage_ns()) == (1, 1_500_000)
    assert cgroup.cpu_stat()["nr_throttled"] == 2
