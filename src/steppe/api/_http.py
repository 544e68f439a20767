"""Request plumbing shared by the Nomad- and Consul-compatible APIs: query options,
blocking-query parameters, JSON responses, and the mapping of Steppe's errors to
HTTP statuses (so no handler ever leaks a traceback)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from steppe.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    RemoteError,
    SteppeError,
    ValidationError,
)
from steppe.structs import parse_duration as go_parse_duration
from steppe.structs import to_json

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds in a Go-style duration ("5m", "1h30m", "250ms"); a bare number means seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return go_parse_duration(text) / 1e9
    except ValueError as exc:
        raise ValidationError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class BlockingQuery:
    index: int
    wait: float

    @property
    def blocking(self) -> bool:
        return self.index > 0


def blocking_query(request: web.Request) -> BlockingQuery:
    raw_index = request.query.get("index", "0") or "0"
    try:
        index = int(raw_index)
    except ValueError as exc:
        raise ValidationError(f"index: {raw_index!r} is not a whole number") from exc
    if index < 0:
        raise ValidationError(f"index: must not be negative (got {index})")
    wait = DEFAULT_WAIT
    if "wait" in request.query:
        wait = parse_duration(request.query["wait"], what="wait")
    return BlockingQuery(index, min(max(wait, 0.0), MAX_WAIT))


def flag(request: web.Request, name: str) -> bool:
    """A query flag: present without a value, or with a true-ish one."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("false", "0", "no")


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=to_json(body), status=status, content_type="application/json", headers=headers
    )


async def read_json(request: web.Request) -> bytes:
    body = await request.read()
    if not body.strip():
        raise ValidationError("request body: empty; expected JSON")
    return body


def error_status(exc: SteppeError) -> int:
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, RemoteError):
        return exc.status
    if isinstance(exc, BackendError):
        return 503
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns Steppe's errors into HTTP answers with a readable message."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except SteppeError as exc:
        return web.Response(text=str(exc) + "\n", status=error_status(exc))
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return web.Response(text="internal error; see the agent's log\n", status=500)
