"""The docker driver across agent restarts and failures, against the private engine."""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest
from tests.drivers.conftest import MakeSpec
from tests.drivers.test_docker import BUSYBOX, busybox, containers_of, contains, text_of
from tests.support.waiting import async_wait_until

from steppe.drivers import TaskHandle
from steppe.drivers._docker import DockerDriver
from steppe.drivers._docker_config import LABEL_ALLOC
from steppe.errors import DriverError

pytestmark = pytest.mark.docker

TICKER = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"


async def test_recover_reattaches_without_a_new_container(
    docker_driver: DockerDriver, docker_spec: MakeSpec, private_dockerd: str
) -> None:
    spec = docker_spec(busybox(TICKER))
    handle = await docker_driver.start(spec)
    await async_wait_until(lambda: contains(spec.stdout_path, "tick 1"), what="first ticks")
    await docker_driver.aclose()  # the agent goes away; the container keeps running

    restarted = DockerDriver(endpoint=private_dockerd)
    try:
        saved = TaskHandle(handle.driver, handle.task_id, handle.started_at, dict(handle.state))
        assert await restarted.recover(saved)
        [info] = await containers_of(private_dockerd, spec.alloc_id)
        assert info["Id"] == handle.task_id
        assert info["State"] == "running"
        before = spec.stdout_path.read_text().count("tick")
        await async_wait_until(
            lambda: _grew(spec.stdout_path, before + 3), what="logs copied again after recover"
        )
        ticks = [line for line in text_of(spec.stdout_path).splitlines() if line.startswith("tick")]
        assert len(ticks) == len(set(ticks)), "lines copied twice after recover"
        await restarted.stop(saved, "SIGKILL", 0)
        result = await restarted.wait(saved)
        assert result.exit_code == 137
        await restarted.destroy(saved)
        assert not await restarted.recover(saved)
    finally:
        await restarted.aclose()


async def _grew(path: Path, count: int) -> bool:
    return text_of(path).count("tick") >= count


async def test_list_tasks_finds_orphaned_containers(
    docker_driver: DockerDriver, docker_spec: MakeSpec, private_dockerd: str
) -> None:
    spec = docker_spec(busybox("sleep 600"), task_name="orphan")
    handle = await docker_driver.start(spec)
    await docker_driver.aclose()

    fresh = DockerDriver(endpoint=private_dockerd)
    try:
        found = {h.task_id: h for h in await fresh.list_tasks()}
        assert handle.task_id in found
        orphan = found[handle.task_id]
        assert orphan.driver == "docker"
        assert orphan.state["alloc_id"] == spec.alloc_id
        assert orphan.state["task"] == "orphan"
        assert orphan.state["job_id"] == "job1"
        assert orphan.state["running"] is True
        await fresh.destroy(orphan)
        assert await containers_of(private_dockerd, spec.alloc_id) == []
        assert handle.task_id not in {h.task_id for h in await fresh.list_tasks()}
    finally:
        await fresh.aclose()


async def test_unlabelled_containers_are_not_ours(
    docker_driver: DockerDriver, private_dockerd: str
) -> None:
    async with aiodocker.Docker(url=private_dockerd) as client:
        other = await client.containers.create({"Image": BUSYBOX, "Cmd": ["true"]})
        try:
            assert other.id not in {h.task_id for h in await docker_driver.list_tasks()}
        finally:
            await other.delete(force=True)


async def test_missing_image_is_a_clear_error(private_dockerd: str, docker_spec: MakeSpec) -> None:
    d = DockerDriver(endpoint=private_dockerd, pull_timeout=20)
    try:
        with pytest.raises(DriverError, match=r"image steppe-test/absent:1: not available locally"):
            await d.start(docker_spec({"image": "steppe-test/absent:1"}))
    finally:
        await d.aclose()


async def test_force_pull_of_a_local_only_image_fails_clearly(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    with pytest.raises(DriverError, match=r"image local/busybox:latest: .*pulling it failed"):
        await docker_driver.start(docker_spec({"image": BUSYBOX, "force_pull": True}))


async def test_invalid_config_names_the_field(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    assert docker_driver.validate_config({"command": "x"}) == ["config.image: required"]
    with pytest.raises(DriverError, match=r"config.image: required"):
        await docker_driver.start(docker_spec({"command": "x"}))


async def test_unknown_port_label_is_a_driver_error(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    with pytest.raises(DriverError, match=r"config.ports: db not among the task's network ports"):
        await docker_driver.start(docker_spec({"image": BUSYBOX, "ports": ["db"]}))


async def test_restart_replaces_a_leftover_container(
    docker_driver: DockerDriver, docker_spec: MakeSpec, private_dockerd: str
) -> None:
    spec = docker_spec(busybox("sleep 600"))
    first = await docker_driver.start(spec)
    second = await docker_driver.start(spec)
    [info] = await containers_of(private_dockerd, spec.alloc_id)
    assert info["Id"] == second.task_id != first.task_id
    await docker_driver.destroy(second)


async def test_container_killed_behind_our_back_ends_wait(
    docker_driver: DockerDriver, docker_spec: MakeSpec, private_dockerd: str
) -> None:
    spec = docker_spec(busybox("sleep 600"))
    handle = await docker_driver.start(spec)
    async with aiodocker.Docker(url=private_dockerd) as client:
        await client.containers.container(handle.task_id).kill(signal="SIGKILL")
    result = await docker_driver.wait(handle)
    assert result.exit_code == 137 and not result.successful
    await docker_driver.destroy(handle)


async def test_engine_errors_become_driver_errors() -> None:
    d = DockerDriver(endpoint="unix:///nonexistent/docker.sock")
    handle = TaskHandle("docker", "0" * 64, 0.0)
    try:
        with pytest.raises(
            DriverError,
            match=r"listing containers: Cannot connect to Docker Engine via unix:///nonexist",
        ):
            await d.list_tasks()
        with pytest.raises(DriverError, match=r"stopping container 000000000000: Cannot connect"):
            await d.stop(handle, "SIGTERM", 1)
    finally:
        await d.aclose()


def test_label_key_is_namespaced() -> None:
    assert LABEL_ALLOC == "com.steppe.alloc_id"
