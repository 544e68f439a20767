"""Copies a container's stdout and stderr into the task's log files, as ``alloc logs`` reads them.

One follower per stream: the engine multiplexes both on one connection, but asking for each
separately keeps them apart without parsing the frame headers ourselves. Each file's
modification time is set to the engine's timestamp of the last line copied into it, so after
an agent restart the followers resume exactly after that line: nothing is repeated, and
nothing the container wrote while the agent was down is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

log = logging.getLogger(__name__)
DRAIN_TIMEOUT = 5.0
NS = 1_000_000_000
_RFC3339_UTC = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


def _open_append(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def resume_point(path: Path) -> str | None:
    """The engine's ``since`` for the first line not yet in ``path`` (the bound is inclusive,
    hence one nanosecond past the last line copied)."""
    try:
        ns = path.stat().st_mtime_ns + 1
    except OSError:
        return None
    return f"{ns // NS}.{ns % NS:09d}"


def split_timestamp(chunk: str) -> tuple[int | None, str]:
    """Splits the engine's ``2026-01-02T03:04:05.123456789Z`` prefix off a log line, as
    nanoseconds since the epoch; None when there is no timestamp to read."""
    stamp, _, rest = chunk.partition(" ")
    match = _RFC3339_UTC.fullmatch(stamp)
    if match is None:
        return None, chunk
    seconds = int(datetime.fromisoformat(match[1]).replace(tzinfo=UTC).timestamp())
    return seconds * NS + int((match[2] or "").ljust(9, "0")), rest


async def _pump(container: DockerContainer, stream: str, path: Path, since: str | None) -> None:
    params: dict[str, Any] = {
        "stdout": stream == "stdout",
        "stderr": stream == "stderr",
        "timestamps": True,
    }
    if since is not None:
        params["since"] = since
    out = _open_append(path)
    try:
        async for chunk in container.log(follow=True, **params):
            stamp, text = split_timestamp(chunk)
            out.write(text.encode())
            out.flush()
            if stamp is not None:
                os.utime(out.fileno(), ns=(stamp, stamp))
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
