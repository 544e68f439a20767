"""``/v1/catalog/*``, ``/v1/health/*`` and ``/v1/status/*``: reads computed from one
snapshot by :mod:`steppe.catalog.reads`, blocking on the tables they depend on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from steppe.api._http import flag
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
from steppe.catalog import CATALOG_READ, reads
from steppe.state import StateSnapshot
from steppe.structs import HEALTH_STATUSES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NODES = ("cnodes",)
_SERVICES = ("services",)


def _read(tables: tuple[str, ...], fn: Callable[[web.Request, StateSnapshot], object]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        routed = await route_dc(request)
        if routed is not None:
            return routed
        index, result = await blocking_read(
            request, tables, table_read(tables, lambda snap: fn(request, snap))
        )
        return respond(result, index)

    return handler


def _tag(request: web.Request) -> str | None:
    return request.query.get("tag") or None


async def datacenters(request: web.Request) -> web.StreamResponse:
    return respond(ctx_of(request).catalog.datacenters())


async def register(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    await ctx_of(request).catalog.register(await json_body(request))
    return respond(True)


async def deregister(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    await ctx_of(request).catalog.deregister(await json_body(request))
    return respond(True)


async def health_state(request: web.Request) -> web.StreamResponse:
    state = request.match_info["state"]
    if state != "any" and state not in HEALTH_STATUSES:
        return text_error(
            400, f"Invalid check state {state!r}: use any, passing, warning or critical"
        )
    return await _read(("checks",), lambda r, s: reads.checks_in_state(s, r.match_info["state"]))(
        request
    )


async def leader(request: web.Request) -> web.StreamResponse:
    """The store leader's server address; empty while there is none, as in Consul."""
    servers = await ctx_of(request).raft_servers()
    return respond(next((s["Address"] for s in servers if s["Leader"]), ""))


async def peers(request: web.Request) -> web.StreamResponse:
    return respond([s["Address"] for s in await ctx_of(request).raft_servers()])


async def raft_configuration(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    servers = await ctx.raft_servers()
    return respond({"Servers": servers, "Index": ctx.catalog.store.revision})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/catalog/datacenters", guarded(datacenters))
    r.add_get("/v1/catalog/nodes", guarded(_read(_NODES, lambda _r, s: reads.nodes(s))))
    r.add_get("/v1/catalog/services", guarded(_read(_SERVICES, lambda _r, s: reads.services(s))))
    r.add_get(
        "/v1/catalog/service/{name}",
        guarded(
            _read(
                ("services", "cnodes"),
                lambda req, s: reads.service_nodes(s, req.match_info["name"], _tag(req)),
            )
        ),
    )
    r.add_get(
        "/v1/catalog/node/{node}",
        guarded(_read(CATALOG_READ, lambda req, s: reads.node_services(s, req.match_info["node"]))),
    )
    r.add_put("/v1/catalog/register", guarded(register))
    r.add_put("/v1/catalog/deregister", guarded(deregister))
    r.add_get(
        "/v1/health/service/{name}",
        guarded(
            _read(
                CATALOG_READ,
                lambda req, s: reads.health_service(
                    s, req.match_info["name"], _tag(req), flag(req, "passing")
                ),
            )
        ),
    )
    r.add_get(
        "/v1/health/checks/{name}",
        guarded(_read(("checks",), lambda req, s: reads.service_checks(s, req.match_info["name"]))),
    )
    r.add_get(
        "/v1/health/node/{node}",
        guarded(_read(("checks",), lambda req, s: reads.node_checks(s, req.match_info["node"]))),
    )
    r.add_get("/v1/health/state/{state}", guarded(health_state))
    r.add_get("/v1/status/leader", guarded(leader))
    r.add_get("/v1/status/peers", guarded(peers))
    r.add_get("/v1/operator/raft/configuration", guarded(raft_configuration))
