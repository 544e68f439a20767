"""``/v1/client/fs/logs/:alloc``: a task's stdout or stderr, whole or followed.

Log files live where the client writes them, Nomad's layout:
``<alloc dir>/alloc/logs/<task>.<stdout|stderr>.<n>``. With ``plain=true`` the bytes
are sent as they are; otherwise as Nomad's JSON stream frames (``Data`` base64).
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import msgspec
from aiohttp import web

from steppe.api._http import flag
from steppe.errors import NotFoundError, ValidationError
from steppe.structs import Allocation

CHUNK = 64 * 1024
FOLLOW_POLL = 0.2


def _log_files(alloc_dir: Path, task: str, stream: str) -> list[Path]:
    logs = alloc_dir / "alloc" / "logs"
    files = list(logs.glob(f"{task}.{stream}.*"))
    return sorted(files, key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)


async def stream_logs(
    request: web.Request, alloc_dir: Path, alloc: Allocation
) -> web.StreamResponse:
    task = request.query.get("task", "")
    if not task:
        tasks = sorted(alloc.task_states)
        if len(tasks) != 1:
            raise ValidationError("task: required when the allocation runs several tasks")
        task = tasks[0]
    stream = request.query.get("type", "stdout")
    if stream not in ("stdout", "stderr"):
        raise ValidationError('type: must be "stdout" or "stderr"')
    try:
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise ValidationError("offset: must be a whole number") from exc
    origin = request.query.get("origin", "start")
    files = _log_files(alloc_dir, task, stream)
    if not files:
        raise NotFoundError(f"no {stream} log for task {task!r} in allocation {alloc.id}")
    plain = flag(request, "plain")
    response = web.StreamResponse(
        headers={"Content-Type": "text/plain" if plain else "application/json"}
    )
    await response.prepare(request)
    path = files[-1]
    size = path.stat().st_size
    position = max(0, size - offset) if origin == "end" else min(offset, size)
    follow = flag(request, "follow")
    while True:
        with path.open("rb") as f:
            f.seek(position)
            data = f.read(CHUNK)
        if data:
            position += len(data)
            if plain:
                await response.write(data)
            else:
                frame = {
                    "Data": base64.b64encode(data).decode(),
                    "File": f"alloc/logs/{path.name}",
                    "Offset": position,
                }
                await response.write(msgspec.json.encode(frame))
            continue
        if not follow:
            break
        await asyncio.sleep(FOLLOW_POLL)
    await response.write_eof()
    return response


def cat_file(request: web.Request, alloc_dir: Path) -> web.Response:
    """``/v1/client/fs/cat/:alloc?path=``: one file of the allocation directory."""
    relative = request.query.get("path", "").lstrip("/")
    if not relative:
        raise ValidationError("path: required (relative to the allocation directory)")
    root = alloc_dir.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise ValidationError(f"path: {relative!r} is outside the allocation directory")
    if not target.is_file():
        raise NotFoundError(f"no file {relative!r} in allocation {alloc_dir.name}")
    return web.Response(body=target.read_bytes(), content_type="text/plain")
