"""Copies a container's stdout and stderr into the task's log files, as ``alloc logs`` reads them.

One follower per stream: the engine multiplexes both on one connection, but asking for each
separately keeps them apart without parsing the frame headers ourselves. After an agent
restart the followers resume from the log files' modification time, so little is repeated
and nothing written while the agent was down is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import IO, Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

log = logging.getLogger(__name__)
DRAIN_TIMEOUT = 5.0


def _open_append(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def resume_point(path: Path) -> float | None:
    """Where to pick a log up again: the time of the last write we made to ``path``."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


async def _pump(container: DockerContainer, stream: str, path: Path, since: float | None) -> None:
    params: dict[str, Any] = {"stdout": stream == "stdout", "stderr": stream == "stderr"}
    if since is not None:
        params["since"] = f"{since:.9f}"
    out = _open_append(path)
    try:
        async for chunk in container.log(follow=True, **params):
            out.write(chunk.encode())
            out.flush()
    except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
        log.warning("log stream %s of container %s ended: %s", stream, container.id[:12], exc)
    finally:
        out.close()


class LogFollowers:
    """The running log copies, by container ID, so ``wait`` can let them drain."""

    def __init__(self) -> None:
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}

    def following(self, container_id: str) -> bool:
        return any(not t.done() for t in self._tasks.get(container_id, []))

    def follow(
        self,
        container: DockerContainer,
        stdout: Path,
        stderr: Path,
        *,
        resume: bool = False,
    ) -> None:
        if self.following(container.id):
            return
        self._tasks[container.id] = [
            asyncio.create_task(
                _pump(container, name, path, resume_point(path) if resume else None),
                name=f"docker-logs-{name}-{container.id[:12]}",
            )
            for name, path in (("stdout", stdout), ("stderr", stderr))
        ]

    async def drain(self, container_id: str, timeout: float = DRAIN_TIMEOUT) -> None:
        """Waits for the streams to end by themselves (they do once the container exits)."""
        tasks = self._tasks.get(container_id, [])
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def cancel(self, container_id: str) -> None:
        tasks = self._tasks.pop(container_id, [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def cancel_all(self) -> None:
        for container_id in list(self._tasks):
            await self.cancel(container_id)
