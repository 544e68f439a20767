"""exec with real namespaces, chroot and cgroups: isolation, limits, OOM, cleanup."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.drivers._tasks import (
    TaskRig,
    alive,
    cgroup_dirs_left,
    descendants,
    start_in_another_process,
    through_json,
)
from tests.support.waiting import wait_until

from steppe.drivers._cgroups import Cgroup
from steppe.drivers._cpu import CFS_PERIOD_US, cfs_quota_us
from steppe.drivers._exec import ExecDriver
from steppe.drivers._taskfs import mounts_under
from steppe.errors import DriverError

pytestmark = pytest.mark.root


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[TaskRig]:
    driver = ExecDriver()
    if await driver.fingerprint() is None:
        pytest.skip("exec needs root, unshare and the memory and cpu cgroup controllers")
    rig = TaskRig(driver, tmp_path)
    try:
        yield rig
    finally:
        await rig.cleanup()


def cgroup_of(handle_state: dict[str, object]) -> Cgroup:
    raw = handle_state["cgroup"]
    assert isinstance(raw, dict)
    return Cgroup.from_state(raw)


def read(path: Path) -> str:
    return path.read_text()


async def test_fingerprint(rig: TaskRig) -> None:
    assert await rig.driver.fingerprint() == {"driver.exec": "1"}


ISOLATION_PROBE = """
echo "host=$(hostname)"
echo "pid=$$"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
ls /root >/dev/null 2>&1 && echo root=visible || echo root=hidden
touch /usr/steppe-probe 2>/dev/null && echo usr=writable || echo usr=readonly
echo local > /local/written && echo shared > /alloc/shared
echo "task_dir=$NOMAD_TASK_DIR alloc_dir=$NOMAD_ALLOC_DIR"
"""


async def test_task_is_pid_1_in_its_own_namespaces_and_root(rig: TaskRig) -> None:
    spec = rig.sh(ISOLATION_PROBE, env={})
    spec = rig.sh(
        ISOLATION_PROBE,
        alloc_dir=spec.alloc_dir,
        task_dir=spec.task_dir,
        stdout_path=spec.stdout_path,
        stderr_path=spec.stderr_path,
        env={
            "NOMAD_TASK_DIR": str(spec.task_dir / "local"),
            "NOMAD_ALLOC_DIR": str(spec.alloc_dir / "alloc"),
        },
    )
    handle = await rig.start(spec)
    result = await rig.driver.wait(handle)
    assert result.successful, read(spec.stderr_path)
    seen = dict(line.split("=", 1) for line in read(spec.stdout_path).split() if "=" in line)
    assert seen["host"] != socket.gethostname()
    assert seen["pid"] == "1"
    assert int(seen["procs"]) < 10
    assert (seen["root"], seen["usr"]) == ("hidden", "readonly")
    assert (seen["task_dir"], seen["alloc_dir"]) == ("/local", "/alloc")
    assert read(spec.task_dir / "local" / "written") == "local\n"
    assert read(spec.alloc_dir / "alloc" / "shared") == "shared\n"
    assert not os.path.exists("/usr/steppe-probe")  # noqa: ASYNC240
    assert mounts_under(spec.task_dir) == []


async def test_limits_are_written_to_the_cgroup(rig: TaskRig) -> None:
    handle = await rig.start(rig.sh("sleep 1000", memory_mb=64, cpu_mhz=250))
    cgroup = cgroup_of(handle.state)
    assert handle.state["task_pid"] in cgroup.pids()
    memory = Path(cgroup.paths.get("memory") or cgroup.paths["unified"])
    cpu = Path(cgroup.paths.get("cpu") or cgroup.paths["unified"])
    if cgroup.version == 1:
        assert read(memory / "memory.limit_in_bytes").strip() == str(64 << 20)
        assert read(cpu / "cpu.cfs_quota_us").strip() == str(cfs_quota_us(250))
        assert read(cpu / "cpu.shares").strip() == "250"
    else:
        assert read(memory / "memory.max").strip() == str(64 << 20)
        assert read(cpu / "cpu.max").split() == [str(cfs_quota_us(250)), str(CFS_PERIOD_US)]


async def test_memory_hog_is_oom_killed_and_reported(rig: TaskRig) -> None:
    """``tail -c`` must hold 300 MB of a pipe in memory to print its end."""
    spec = rig.sh("head -c 300000000 /dev/zero | tail -c 300000000 >/dev/null", memory_mb=32)
    result = await rig.driver.wait(await rig.start(spec))
    assert result.oom_killed, result
    assert not result.successful


async def test_cpu_bound_task_gets_about_its_share(rig: TaskRig) -> None:
    handle = await rig.start(rig.sh("while :; do :; done", cpu_mhz=100))
    cgroup = cgroup_of(handle.state)
    stat = wait_until(lambda: s if (s := cgroup.cpu_stat()).get("nr_periods", 0) >= 10 else None)
    used_ns = cgroup.cpu_usage_ns()
    wall_ns = cgroup.cpu_stat()["nr_periods"] * CFS_PERIOD_US * 1000
    share = cfs_quota_us(100) / CFS_PERIOD_US
    assert stat["nr_throttled"] > 0
    assert used_ns / wall_ns < 3 * share, (used_ns, wall_ns, share)


async def test_stop_kills_every_process_of_the_cgroup(rig: TaskRig) -> None:
    handle = await rig.start(rig.sh("setsid sleep 1000 & sleep 1000 & wait"))
    cgroup = cgroup_of(handle.state)
    task_pid = handle.state["task_pid"]
    tree = wait_until(lambda: d if len(d := descendants(task_pid)) == 2 else None)
    assert cgroup.pids() == {task_pid, *tree}
    await rig.driver.stop(handle, "SIGTERM", 0.5)
    wait_until(lambda: not any(alive(p) for p in {task_pid, *tree}), what="tree gone")
    assert not cgroup.pids()


async def test_kill_signal_reaches_pid_1_that_traps_it(rig: TaskRig) -> None:
    spec = rig.sh(
        'trap "echo caught > /local/marker; exit 3" INT; touch /local/ready; sleep 1000 & wait'
    )
    handle = await rig.start(spec)
    wait_until(lambda: (spec.task_dir / "local" / "ready").exists())
    await rig.driver.stop(handle, "SIGINT", 10)
    assert (await rig.driver.wait(handle)).exit_code == 3
    assert read(spec.task_dir / "local" / "marker") == "caught\n"


async def test_fresh_driver_recovers_and_learns_the_exit(rig: TaskRig) -> None:
    spec = rig.sh("while [ ! -f /local/go ]; do sleep 0.05; done; exit 42")
    handle = through_json(await rig.start(spec))
    restarted = ExecDriver()
    assert await restarted.recover(handle)
    (spec.task_dir / "local" / "go").touch()
    assert (await restarted.wait(handle)).exit_code == 42


async def test_destroy_removes_cgroups_and_mount_points(rig: TaskRig) -> None:
    spec = rig.sh("sleep 1000")
    handle = await rig.start(spec)
    assert cgroup_dirs_left(handle)
    await rig.driver.destroy(handle)
    assert not alive(handle.state["task_pid"])
    assert cgroup_dirs_left(handle) == []
    assert mounts_under(spec.task_dir) == []
    assert sorted(os.listdir(spec.task_dir)) == ["local", "secrets"]
    await rig.driver.destroy(handle)


async def test_command_missing_inside_the_root_fails_start(rig: TaskRig) -> None:
    spec = rig.spec("no-such-program")
    with pytest.raises(DriverError, match="'no-such-program' not found in the task's PATH"):
        await rig.start(spec)
    assert mounts_under(spec.task_dir) == []
    assert sorted(os.listdir(spec.task_dir)) == ["local", "secrets"]
    assert not os.path.exists(spec.alloc_dir / ".executor")  # noqa: ASYNC240


async def test_runs_as_the_task_user_inside_the_root(rig: TaskRig) -> None:
    spec = rig.sh("id -un; id -u", user="nobody")
    assert (await rig.driver.wait(await rig.start(spec))).successful, read(spec.stderr_path)
    assert read(spec.stdout_path).split()[0] == "nobody"


async def test_task_outlives_the_process_that_started_it(rig: TaskRig) -> None:
    spec = rig.sh("while [ ! -f /local/go ]; do sleep 0.05; done; exit 42")
    handle = start_in_another_process("exec", spec)
    rig.handles.append(handle)
    assert alive(handle.state["task_pid"])
    assert await rig.driver.recover(handle)
    (spec.task_dir / "local" / "go").touch()
    assert (await rig.driver.wait(handle)).exit_code == 42
