"""Reading a task's log files for ``alloc logs`` and ``/v1/client/fs/logs/:alloc``.

Logs live as ``alloc/logs/<task>.<stream>.<n>`` (Nomad's layout); the numbered files are
read as one stream, so offsets mean the same thing whether or not a file was rotated.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

from steppe.client._allocdir import STREAMS, AllocDir
from steppe.errors import NotFoundError, Problem, ValidationError

CHUNK = 64 * 1024
POLL_INTERVAL = 0.25


def _log_files(logs: Path, task: str, stream: str) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(task)}\.{stream}\.(\d+)$")
    numbered = []
    for entry in logs.iterdir() if logs.is_dir() else ():
        match = pattern.match(entry.name)
        if match:
            numbered.append((int(match.group(1)), entry))
    return [path for _, path in sorted(numbered)]


def _validate(task: str, stream: str, origin: str, offset: int) -> list[Problem]:
    problems = []
    if not task or "/" in task or task in (".", ".."):
        problems.append(Problem("task", f"invalid task name {task!r}"))
    if stream not in STREAMS:
        problems.append(Problem("type", f"must be stdout or stderr, not {stream!r}"))
    if origin not in ("start", "end"):
        problems.append(Problem("origin", f"must be start or end, not {origin!r}"))
    if offset < 0:
        problems.append(Problem("offset", "must not be negative"))
    return problems


async def read_logs(
    data_dir: Path,
    alloc_id: str,
    task: str,
    stream: str = "stdout",
    offset: int = 0,
    follow: bool = False,
    origin: str = "start",
) -> AsyncIterator[bytes]:
    """Yields the log's bytes from ``offset`` (counted from ``origin``); with ``follow``,
    keeps yielding what the task writes until the caller stops iterating."""
    problems = _validate(task, stream, origin, offset)
    if problems:
        raise ValidationError(problems)
    alloc_dir = AllocDir.of(data_dir, alloc_id)
    if not alloc_dir.root.is_dir():
        raise NotFoundError(f"allocation {alloc_id} has no directory on this node")
    files = _log_files(alloc_dir.logs, task, stream)
    if not files and not follow:
        raise NotFoundError(f"allocation {alloc_id} has no {stream} log for task {task!r}")
    total = sum(f.stat().st_size for f in files)
    position = max(0, total - offset) if origin == "end" else offset
    while True:
        sent = False
        async for chunk in _read_from(_log_files(alloc_dir.logs, task, stream), position):
            position += len(chunk)
            sent = True
            yield chunk
        if not follow:
            return
        if not sent:
            await asyncio.sleep(POLL_INTERVAL)


async def _read_from(files: list[Path], position: int) -> AsyncIterator[bytes]:
    """The bytes after ``position`` in the concatenation of ``files``."""
    for path in files:
        offset = 0
        while True:
            chunk, skipped = await asyncio.to_thread(_read_chunk, path, position + offset)
            if skipped is not None:
                position = max(0, position - skipped)
                break
            if not chunk:
                position = 0
                break
            offset += len(chunk)
            yield chunk


def _read_chunk(path: Path, position: int) -> tuple[bytes, int | None]:
    """A chunk at ``position``, or (b"", size) when the file ends before it."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if position >= size and position > 0:
                return b"", size
            fh.seek(position)
            return fh.read(CHUNK), None
    except FileNotFoundError:
        return b"", 0
