"""``/v1/agent/*`` (this node's services and checks) and ``/v1/session/*``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from steppe.api.consul._common import (
    blocking_read,
    ctx_of,
    guarded,
    json_body,
    respond,
    route_dc,
    table_read,
    text_error,
)
from steppe.catalog import parse_session
from steppe.catalog._tables import SESSIONS
from steppe.errors import NotFoundError, ValidationError
from steppe.state import StateSnapshot
from steppe.structs import HEALTH_CRITICAL, HEALTH_PASSING, HEALTH_STATUSES, HEALTH_WARNING, Session

_SESSIONS = ("sessions",)


def _member(request: web.Request) -> dict[str, Any]:
    ctx = ctx_of(request)
    agent = ctx.agent
    return {
        "Name": agent.node_name,
        "Addr": agent.address,
        "Port": int(ctx.agent_info.get("SerfPortLAN", 8301)),
        "Tags": {"dc": ctx.catalog.datacenter, "role": "consul", "build": "steppe"},
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }


async def agent_self(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    config = {
        "Datacenter": ctx.catalog.datacenter,
        "NodeName": ctx.agent.node_name,
        "NodeID": ctx.agent.node.id,
        "Server": True,
        "Version": "1.17.0-steppe",
        **ctx.agent_info,
    }
    return respond({"Config": config, "Member": _member(request), "Meta": ctx.agent.node.meta})


async def members(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    if request.query.get("wan", "").lower() in ("1", "true") and ctx.wan_members:
        return respond(ctx.wan_members())
    return respond(ctx.members() if ctx.members else [_member(request)])


async def services(request: web.Request) -> web.StreamResponse:
    return respond(ctx_of(request).agent.services())


async def service(request: web.Request) -> web.StreamResponse:
    found = ctx_of(request).agent.services().get(request.match_info["id"])
    if found is None:
        return text_error(404, f"unknown service ID: {request.match_info['id']}")
    return respond(found)


async def checks(request: web.Request) -> web.StreamResponse:
    return respond(ctx_of(request).agent.checks())


async def service_register(request: web.Request) -> web.StreamResponse:
    await ctx_of(request).agent.register_service(await json_body(request))
    return web.Response()


async def service_deregister(request: web.Request) -> web.StreamResponse:
    await ctx_of(request).agent.deregister_service(request.match_info["id"])
    return web.Response()


async def check_register(request: web.Request) -> web.StreamResponse:
    await ctx_of(request).agent.register_check(await json_body(request))
    return web.Response()


async def check_deregister(request: web.Request) -> web.StreamResponse:
    await ctx_of(request).agent.deregister_check(request.match_info["id"])
    return web.Response()


_TTL_STATUS = {"pass": HEALTH_PASSING, "warn": HEALTH_WARNING, "fail": HEALTH_CRITICAL}


async def check_ttl(request: web.Request) -> web.StreamResponse:
    status = _TTL_STATUS[request.match_info["verb"]]
    note = request.query.get("note", "")
    await ctx_of(request).agent.update_ttl(request.match_info["id"], status, note)
    return web.Response()


async def check_update(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ValidationError('body: expected {"Status": ..., "Output": ...}')
    status, output = body.get("Status", ""), body.get("Output", "")
    if status not in HEALTH_STATUSES or not isinstance(output, str):
        raise ValidationError("Status: use passing, warning or critical; Output: a string")
    await ctx_of(request).agent.update_ttl(request.match_info["id"], status, output)
    return web.Response()


# sessions ------------------------------------------------------------------------------
async def session_create(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    ctx = ctx_of(request)
    body = await json_body(request, required=False)
    session = parse_session(body, ctx.agent.node_name, ctx.catalog.session_limits)
    sid = await ctx.catalog.sessions.create(session)
    return respond({"ID": sid})


async def session_destroy(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    await ctx_of(request).catalog.sessions.invalidate(request.match_info["id"])
    return respond(True)


async def session_renew(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    try:
        session = await ctx_of(request).catalog.sessions.renew(request.match_info["id"])
    except NotFoundError as exc:
        return text_error(404, str(exc))
    return respond([session])


def _session_read(pick: Any) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        routed = await route_dc(request)
        if routed is not None:
            return routed

        def compute(snap: StateSnapshot) -> list[Session]:
            rows: list[Session] = pick(request, snap)
            return sorted(rows, key=lambda s: s.create_index)

        index, found = await blocking_read(request, _SESSIONS, table_read(_SESSIONS, compute))
        return respond(found, index)

    return handler


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/agent/self", guarded(agent_self))
    r.add_get("/v1/agent/members", guarded(members))
    r.add_get("/v1/agent/services", guarded(services))
    r.add_get("/v1/agent/service/{id}", guarded(service))
    r.add_get("/v1/agent/checks", guarded(checks))
    r.add_put("/v1/agent/service/register", guarded(service_register))
    r.add_put("/v1/agent/service/deregister/{id}", guarded(service_deregister))
    r.add_put("/v1/agent/check/register", guarded(check_register))
    r.add_put("/v1/agent/check/deregister/{id}", guarded(check_deregister))
    r.add_put("/v1/agent/check/{verb:pass|warn|fail}/{id}", guarded(check_ttl))
    r.add_put("/v1/agent/check/update/{id}", guarded(check_update))
    r.add_put("/v1/session/create", guarded(session_create))
    r.add_put("/v1/session/destroy/{id}", guarded(session_destroy))
    r.add_put("/v1/session/renew/{id}", guarded(session_renew))
    r.add_get(
        "/v1/session/info/{id}",
        guarded(
            _session_read(
                lambda req, snap: (
                    [s] if (s := snap.get(SESSIONS.name, req.match_info["id"])) else []
                )
            )
        ),
    )
    r.add_get(
        "/v1/session/node/{node}",
        guarded(
            _session_read(
                lambda req, snap: snap.by_index(SESSIONS.name, "node", req.match_info["node"])
            )
        ),
    )
    r.add_get(
        "/v1/session/list",
        guarded(_session_read(lambda _req, snap: list(snap.rows(SESSIONS.name)))),
    )
