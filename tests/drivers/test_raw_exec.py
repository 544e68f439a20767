"""raw_exec with real processes: logs, exit codes, env, signals, whole-tree kills, recovery."""

from __future__ import annotations

import os
import signal
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
from tests.support.waiting import async_wait_until, wait_until

from steppe.drivers._raw_exec import RawExecDriver
from steppe.errors import DriverError


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[TaskRig]:
    rig = TaskRig(RawExecDriver(enabled=True), tmp_path)
    try:
        yield rig
    finally:
        await rig.cleanup()


async def test_fingerprint_only_when_enabled() -> None:
    assert await RawExecDriver(enabled=True).fingerprint() == {"driver.raw_exec": "1"}
    assert await RawExecDriver().fingerprint() is None


def test_validate_config_names_each_bad_field() -> None:
    driver = RawExecDriver(enabled=True)
    assert driver.validate_config({"command": "sh", "args": ["-c", "true"]}) == []
    assert driver.validate_config({}) == ["config.command: required, the program to run"]
    problems = driver.validate_config({"command": 3, "args": ["a", 2], "image": "x"})
    assert problems == [
        "config.command: must be a non-empty string",
        "config.args[1]: must be a string, got int",
        "config.image: unknown field; allowed: command, args",
    ]
    assert driver.validate_config({"command": "sh", "args": "-c"}) == [
        "config.args: must be a list of strings"
    ]


async def test_output_is_appended_to_the_log_files(rig: TaskRig) -> None:
    spec = rig.sh("echo to-out; echo to-err >&2")
    for _ in range(2):
        result = await rig.driver.wait(await rig.start(spec))
        assert result.successful
    assert spec.stdout_path.read_text() == "to-out\nto-out\n"
    assert spec.stderr_path.read_text() == "to-err\nto-err\n"


async def test_exit_code_env_and_working_directory(rig: TaskRig) -> None:
    spec = rig.sh('echo "$GREETING from $PWD"; exit 7', env={"GREETING": "hello"})
    result = await rig.driver.wait(await rig.start(spec))
    assert (result.exit_code, result.signal, result.successful) == (7, 0, False)
    assert spec.stdout_path.read_text() == f"hello from {spec.task_dir}\n"


async def test_death_by_signal_is_reported(rig: TaskRig) -> None:
    result = await rig.driver.wait(await rig.start(rig.sh("kill -TERM $$")))
    assert (result.exit_code, result.signal) == (128 + signal.SIGTERM, signal.SIGTERM)


async def test_missing_command_fails_start_with_its_name(rig: TaskRig) -> None:
    with pytest.raises(DriverError, match=r"task web: .*No such file"):
        await rig.start(rig.spec("/nonexistent/program"))
    with pytest.raises(DriverError, match=r"config\.command: required"):
        await rig.start(rig.spec("x", config={}))


async def test_stop_kills_the_whole_tree_even_a_new_session(rig: TaskRig) -> None:
    spec = rig.sh("setsid sleep 1000 & sleep 1000 & sleep 1000 & wait")
    handle = await rig.start(spec)
    task_pid = handle.state["task_pid"]
    tree = wait_until(lambda: d if len(d := descendants(task_pid)) == 3 else None)
    await rig.driver.stop(handle, "SIGTERM", 5)
    wait_until(lambda: not any(alive(p) for p in {task_pid, *tree}), what="tree gone")
    assert (await rig.driver.wait(handle)).signal == signal.SIGTERM


async def test_kill_signal_is_sent_before_the_kill(rig: TaskRig) -> None:
    spec = rig.sh('trap "echo caught > marker; exit 3" INT; touch ready; sleep 1000 & wait')
    handle = await rig.start(spec)
    wait_until(lambda: (spec.task_dir / "ready").exists())
    await rig.driver.stop(handle, "SIGINT", 10)
    assert (await rig.driver.wait(handle)).exit_code == 3
    assert (spec.task_dir / "marker").read_text() == "caught\n"


async def test_kill_timeout_ends_in_sigkill(rig: TaskRig) -> None:
    spec = rig.sh('trap "" INT; touch ready; sleep 1000')
    handle = await rig.start(spec)
    wait_until(lambda: (spec.task_dir / "ready").exists())
    await rig.driver.stop(handle, "INT", 0.2)
    assert (await rig.driver.wait(handle)).signal == signal.SIGKILL


async def test_unknown_signal_is_a_driver_error(rig: TaskRig) -> None:
    handle = await rig.start(rig.sh("sleep 1000"))
    with pytest.raises(DriverError, match="unknown signal 'SIGNOPE'"):
        await rig.driver.stop(handle, "SIGNOPE", 1)


async def test_fresh_driver_recovers_a_running_task_and_learns_its_exit(
    rig: TaskRig, tmp_path: Path
) -> None:
    spec = rig.sh("while [ ! -f go ]; do sleep 0.05; done; exit 42")
    handle = through_json(await rig.start(spec))
    restarted = RawExecDriver(enabled=True)
    assert await restarted.recover(handle)
    (spec.task_dir / "go").touch()
    assert (await restarted.wait(handle)).exit_code == 42


async def test_exit_while_no_agent_watched_is_still_known(rig: TaskRig) -> None:
    spec = rig.sh("touch done; exit 5")
    handle = through_json(await rig.start(spec))
    wait_until(lambda: Path(handle.state["status_path"]).exists())
    restarted = RawExecDriver(enabled=True)
    assert await restarted.recover(handle)
    assert (await restarted.wait(handle)).exit_code == 5


async def test_destroy_is_idempotent_and_forgets_the_task(rig: TaskRig) -> None:
    handle = await rig.start(rig.sh("sleep 1000"))
    pid = handle.state["task_pid"]
    await rig.driver.destroy(handle)
    await rig.driver.destroy(handle)
    assert not alive(pid)
    assert not await RawExecDriver(enabled=True).recover(handle)
    assert not cgroup_dirs_left(handle)


async def test_signal_reaches_the_task_without_stopping_it(rig: TaskRig) -> None:
    spec = rig.sh('trap "echo hup >> got" HUP; touch ready; while :; do sleep 0.05; done')
    handle = await rig.start(spec)
    wait_until(lambda: (spec.task_dir / "ready").exists())
    await rig.driver.signal(handle, "SIGHUP")
    wait_until(lambda: (spec.task_dir / "got").exists())
    assert alive(handle.state["task_pid"])

    async def exited() -> bool:
        return not alive(handle.state["task_pid"])

    await rig.driver.stop(handle, "SIGKILL", 0)
    await async_wait_until(exited)


async def test_list_tasks_finds_tasks_under_its_root_until_destroyed(tmp_path: Path) -> None:
    rig = TaskRig(RawExecDriver(enabled=True, task_root=tmp_path), tmp_path)
    try:
        spec = rig.sh("sleep 1000")
        handle = await rig.start(spec)
        other = RawExecDriver(enabled=True, task_root=tmp_path)
        listed = await other.list_tasks()
        assert [(h.task_id, h.state["alloc_id"]) for h in listed] == [
            (handle.task_id, spec.alloc_id)
        ]
        assert await other.recover(listed[0])
        assert await RawExecDriver(enabled=True).list_tasks() == []
        await other.destroy(listed[0])
        assert await other.list_tasks() == []
    finally:
        await rig.cleanup()


async def test_without_cgroups_the_process_group_still_dies_whole(tmp_path: Path) -> None:
    rig = TaskRig(RawExecDriver(enabled=True, use_cgroups=False), tmp_path)
    try:
        handle = await rig.start(rig.sh("sleep 1000 & sleep 1000 & wait"))
        assert handle.state["cgroup"] is None
        task_pid = handle.state["task_pid"]
        tree = wait_until(lambda: d if len(d := descendants(task_pid)) == 2 else None)
        await rig.driver.stop(handle, "SIGTERM", 5)
        wait_until(lambda: not any(alive(p) for p in {task_pid, *tree}), what="tree gone")
    finally:
        await rig.cleanup()


@pytest.mark.root
async def test_runs_as_the_task_user(rig: TaskRig) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    spec = rig.sh("id -un", user="nobody")
    assert (await rig.driver.wait(await rig.start(spec))).successful
    assert spec.stdout_path.read_text() == "nobody\n"
    with pytest.raises(DriverError, match="user: 'no-such-user' does not exist"):
        await rig.start(rig.sh("true", user="no-such-user"))


async def test_task_outlives_the_process_that_started_it(rig: TaskRig) -> None:
    spec = rig.sh("while [ ! -f go ]; do sleep 0.05; done; exit 42")
    handle = start_in_another_process("raw_exec", spec)
    rig.handles.append(handle)
    assert alive(handle.state["task_pid"])
    assert await rig.driver.recover(handle)
    (spec.task_dir / "go").touch()
    assert (await rig.driver.wait(handle)).exit_code == 42
