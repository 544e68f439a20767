from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from steppe.drivers import TaskSpec
from steppe.drivers._docker import DockerDriver
from steppe.drivers._docker_config import LABEL_ALLOC

MakeSpec = Callable[..., TaskSpec]


@pytest.fixture
async def docker_driver(private_dockerd: str) -> AsyncIterator[DockerDriver]:
    d = DockerDriver(endpoint=private_dockerd)
    yield d
    await d.aclose()


@pytest.fixture
async def docker_spec(private_dockerd: str, tmp_path: Path) -> AsyncIterator[MakeSpec]:
    """Builds task specs with fresh allocation IDs; removes every container they led to."""
    alloc_ids: list[str] = []

    def make(config: dict[str, Any], **kw: Any) -> TaskSpec:
        alloc_id = kw.pop("alloc_id", None) or str(uuid.uuid4())
        alloc_ids.append(alloc_id)
        alloc_dir = tmp_path / alloc_id
        task_dir = alloc_dir / "task"
        for d in (alloc_dir / "alloc" / "logs", task_dir / "local", task_dir / "secrets"):
            d.mkdir(parents=True, exist_ok=True)
        fields: dict[str, Any] = {
            "alloc_id": alloc_id,
            "job_id": "job1",
            "group": "group1",
            "task_name": "task",
            "config": config,
            "env": {"GREETING": "hello from env"},
            "alloc_dir": alloc_dir,
            "task_dir": task_dir,
            "stdout_path": alloc_dir / "alloc/logs/task.stdout.0",
            "stderr_path": alloc_dir / "alloc/logs/task.stderr.0",
            "memory_mb": 64,
        }
        fields.update(kw)
        return TaskSpec(**fields)

    yield make
    async with aiodocker.Docker(url=private_dockerd) as client:
        for alloc_id in alloc_ids:
            found = await client.containers.list(
                all=True, filters={"label": [f"{LABEL_ALLOC}={alloc_id}"]}
            )
            for c in found:
                await c.delete(force=True)
