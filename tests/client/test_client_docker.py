"""The client over a real (private) Docker engine: an agent restart keeps exactly the same
containers, and containers whose allocation is gone are removed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from tests.client._support import FakeServer, make_alloc, make_job, until
from tests.support.waiting import async_wait_until

from steppe.client import Client
from steppe.drivers import TaskSpec
from steppe.drivers._docker import DockerDriver
from steppe.drivers._docker_config import LABEL_ALLOC
from steppe.structs import NS, Node, Task

pytestmark = pytest.mark.docker

BUSYBOX = "local/busybox:latest"


async def containers(host: str, alloc_id: str) -> list[str]:
    async with aiodocker.Docker(url=host) as docker:
        found = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL_ALLOC}={alloc_id}"]}
        )
        return [c.id for c in found]


@pytest.fixture
async def engine(private_dockerd: str) -> AsyncIterator[tuple[str, list[str]]]:
    """The engine's address, and a list of allocation IDs whose containers get removed."""
    alloc_ids: list[str] = []
    try:
        yield private_dockerd, alloc_ids
    finally:
        async with aiodocker.Docker(url=private_dockerd) as docker:
            for alloc_id in alloc_ids:
                for c in await docker.containers.list(
                    all=True, filters={"label": [f"{LABEL_ALLOC}={alloc_id}"]}
                ):
                    with contextlib.suppress(aiodocker.DockerError):
                        await c.delete(force=True)


def docker_task(script: str) -> Task:
    config: dict[str, Any] = {"image": BUSYBOX, "command": "sh", "args": ["-c", script]}
    return Task(name="web", driver="docker", config=config, kill_timeout=NS)


async def test_client_restart_keeps_the_same_containers(
    engine: tuple[str, list[str]], tmp_path: Path, node: Node
) -> None:
    host, alloc_ids = engine
    server = FakeServer()
    alloc = make_alloc(make_job(docker_task("echo up; exec sleep 600")))
    alloc_ids.append(alloc.id)
    orphan_driver = DockerDriver(host)
    orphan_spec = _spec(tmp_path, "gone-alloc")
    alloc_ids.append("gone-alloc")
    await orphan_driver.start(orphan_spec)
    await orphan_driver.aclose()

    first_driver = DockerDriver(host)
    first = Client(server, {"docker": first_driver}, tmp_path, node, batch_window=0.05)
    await first.start()
    try:
        await server.place(alloc)
        await until(lambda: server.status(alloc.id) == "running", "running", timeout=60)
        before = await containers(host, alloc.id)
        assert len(before) == 1

        async def orphan_gone() -> bool:
            return await containers(host, "gone-alloc") == []

        await async_wait_until(orphan_gone, what="orphaned container removed")
    finally:
        await first.stop(leave_running=True)
        await first_driver.aclose()

    second_driver = DockerDriver(host)
    second = Client(server, {"docker": second_driver}, tmp_path, node, batch_window=0.05)
    await second.start()
    try:
        await until(lambda: alloc.id in second.runners, "restored")
        web = second.runners[alloc.id].runners["web"]
        await until(lambda: web.state.state == "running", "re-attached")
        assert await containers(host, alloc.id) == before
        assert [e.type for e in web.state.events].count("Started") == 1
        await server.set_desired(alloc.id, "stop")
        await until(lambda: server.status(alloc.id) == "complete", "stopped", timeout=60)

        async def removed() -> bool:
            return await containers(host, alloc.id) == []

        await async_wait_until(removed, what="container removed")
    finally:
        await second.stop(leave_running=False)
        await second_driver.aclose()


def _spec(tmp_path: Path, alloc_id: str) -> TaskSpec:
    alloc_dir = tmp_path / "orphans" / alloc_id
    task_dir = alloc_dir / "web"
    for d in (alloc_dir / "alloc" / "logs", task_dir / "local", task_dir / "secrets"):
        d.mkdir(parents=True, exist_ok=True)
    return TaskSpec(
        alloc_id=alloc_id,
        job_id="old",
        group="g",
        task_name="web",
        config={"image": BUSYBOX, "command": "sleep", "args": ["600"]},
        env={},
        alloc_dir=alloc_dir,
        task_dir=task_dir,
        stdout_path=alloc_dir / "alloc/logs/web.stdout.0",
        stderr_path=alloc_dir / "alloc/logs/web.stderr.0",
    )
