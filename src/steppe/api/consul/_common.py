"""What every Consul handler shares: the context it serves from, Consul's response headers,
blocking reads, and ``?dc=`` routing to another datacenter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiohttp import web

from steppe.api._http import blocking_query, error_status
from steppe.catalog import CatalogServer, LocalAgent
from steppe.errors import SteppeError, ValidationError
from steppe.state import StateSnapshot
from steppe.structs import to_json

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass
class ConsulContext:
    catalog: CatalogServer
    agent: LocalAgent
    agent_info: Mapping[str, Any] = field(default_factory=dict)
    members: Callable[[], list[dict[str, Any]]] | None = None
    raft: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None
    wan_members: Callable[[], list[dict[str, Any]]] | None = None
    client: aiohttp.ClientSession | None = None

    async def raft_servers(self) -> list[dict[str, Any]]:
        """The datacenter store's servers; an agent without one is its own store."""
        if self.raft is not None:
            return await self.raft()
        return [raft_server(self.agent_info.get("NodeName", ""), "127.0.0.1:8300", leader=True)]


def raft_server(node: str, address: str, leader: bool, member_id: str = "") -> dict[str, Any]:
    """One server as Consul's ``/v1/operator/raft/configuration`` lists it."""
    return {
        "ID": member_id or node,
        "Node": node,
        "Address": address,
        "Leader": leader,
        "ProtocolVersion": "3",
        "Voter": True,
    }


CTX: web.AppKey[ConsulContext] = web.AppKey("consul_ctx", ConsulContext)


def ctx_of(request: web.Request) -> ConsulContext:
    return request.app[CTX]


def headers(index: int) -> dict[str, str]:
    return {
        "X-Consul-Index": str(index),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
    }


def respond(body: Any, index: int | None = None, status: int = 200) -> web.Response:
    return web.Response(
        body=to_json(body),
        status=status,
        content_type=JSON,
        headers=headers(index) if index is not None else None,
    )


def text_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


async def blocking_read(
    request: web.Request,
    tables: tuple[str, ...],
    compute: Callable[[StateSnapshot], tuple[int, T]],
) -> tuple[int, T]:
    """A read that blocks while ``?index=`` is current: waits for a change to ``tables``
    that moves ``compute``'s index past it, or for ``?wait`` to run out."""
    q = blocking_query(request)
    store = ctx_of(request).catalog.store
    if "consistent" in request.query:
        snap = await store.consistent_snapshot()
    else:
        snap = store.snapshot()
    index, result = compute(snap)
    if q.blocking and index <= q.index:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + q.wait
        while index <= q.index:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            snap = await store.block(tables, snap.table_index(*tables), remaining)
            index, result = compute(snap)
    return max(index, 1), result


def table_read(
    tables: tuple[str, ...], fn: Callable[[StateSnapshot], T]
) -> Callable[[StateSnapshot], tuple[int, T]]:
    return lambda snap: (snap.table_index(*tables), fn(snap))


async def route_dc(request: web.Request) -> web.StreamResponse | None:
    """None when the request is for this datacenter; else the other DC's answer."""
    dc = request.query.get("dc")
    ctx = ctx_of(request)
    if not dc or dc == ctx.catalog.datacenter:
        return None
    base = ctx.catalog.remote_datacenters().get(dc)
    if not base:
        return text_error(500, "No path to datacenter")
    if ctx.client is None:
        ctx.client = aiohttp.ClientSession()
    body = await request.read()
    url = base.rstrip("/") + request.rel_url.path_qs
    try:
        async with ctx.client.request(request.method, url, data=body or None) as resp:
            payload = await resp.read()
            out = web.Response(body=payload, status=resp.status)
            for name in ("Content-Type", "X-Consul-Index", "X-Consul-KnownLeader"):
                if name in resp.headers:
                    out.headers[name] = resp.headers[name]
            return out
    except aiohttp.ClientError as exc:
        return text_error(500, f"No path to datacenter {dc!r}: {exc}")


def int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationError(f"{name}: {raw!r} is not a whole number") from exc
    if value < 0:
        raise ValidationError(f"{name}: must not be negative")
    return value


async def json_body(request: web.Request, *, required: bool = True) -> Any:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ValidationError("request body: empty; expected JSON")
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"Request decode failed: {exc}") from exc


def guarded(fn: Handler) -> Handler:
    """Maps Steppe's errors to answers with a message (a wrapper rather than a middleware,
    so the KV read path pays for none of it)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except web.HTTPException:
            raise
        except SteppeError as exc:
            return text_error(error_status(exc), str(exc))
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.path)
            return text_error(500, "internal error; see the agent's log")

    return handler
