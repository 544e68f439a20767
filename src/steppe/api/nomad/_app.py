"""The Nomad-compatible HTTP API (port 4646): allocations, evaluations, nodes, status
and agent endpoints here; jobs in ``_jobs``, dispatch and periodic in ``_dispatch``.

Paths, JSON names, blocking-query headers and status codes follow Nomad's API, so
``curl`` habits and existing Nomad client libraries work against Steppe unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from steppe.api._forward import FORWARDED_HEADER, forward
from steppe.api._http import (
    error_middleware,
    json_response,
    read_json,
)
from steppe.api.nomad import _views as views
from steppe.api.nomad._context import CONTEXT, NomadAPIHolder, api_of, find
from steppe.api.nomad._dispatch import add_routes as add_dispatch_routes
from steppe.api.nomad._jobs import add_routes as add_job_routes
from steppe.api.nomad._logs import cat_file, stream_logs
from steppe.errors import NotFoundError, ValidationError
from steppe.structs import Allocation, to_builtins


def _by_prefix(items: list[Any], request: web.Request) -> list[Any]:
    prefix = request.query.get("prefix", "")
    return [i for i in items if i.id.startswith(prefix)] if prefix else items


async def list_allocations(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["allocs"])
    allocs = sorted(_by_prefix(list(snap.allocs()), request), key=lambda a: -a.create_index)
    return api.respond(snap, ["allocs"], [views.alloc_stub(a) for a in allocs])


async def get_allocation(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["allocs"])
    alloc: Allocation = find(list(snap.allocs()), request.match_info["alloc_id"], "alloc")
    return api.respond(snap, ["allocs"], snap.alloc_with_job(alloc))


async def list_evaluations(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["evals"])
    evals = sorted(_by_prefix(list(snap.evals()), request), key=lambda e: -e.create_index)
    return api.respond(snap, ["evals"], evals)


async def get_evaluation(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["evals"])
    return api.respond(
        snap, ["evals"], find(list(snap.evals()), request.match_info["eval_id"], "eval")
    )


async def list_nodes(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["nodes"])
    nodes = sorted(_by_prefix(list(snap.nodes()), request), key=lambda n: n.name)
    return api.respond(snap, ["nodes"], [views.node_stub(n) for n in nodes])


async def get_node(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["nodes"])
    node = find(list(snap.nodes()), request.match_info["node_id"], "node")
    body = to_builtins(node)
    body["Usage"] = views.node_usage(snap, node)
    return api.respond(snap, ["nodes"], body)


async def node_allocations(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["allocs", "nodes"])
    node = find(list(snap.nodes()), request.match_info["node_id"], "node")
    allocs = [snap.alloc_with_job(a) for a in snap.allocs_by_node(node.id)]
    return api.respond(snap, ["allocs"], allocs)


async def node_eligibility(request: web.Request) -> web.Response:
    api = api_of(request)
    body = msgspec.json.decode(await read_json(request))
    eligibility = body.get("Eligibility") if isinstance(body, dict) else None
    if eligibility not in ("eligible", "ineligible"):
        raise ValidationError('Eligibility: must be "eligible" or "ineligible"')
    snap = api.server.store.snapshot()
    node = find(list(snap.nodes()), request.match_info["node_id"], "node")
    await api.server.endpoints.update_node_eligibility(node.id, eligibility == "eligible")
    return json_response({"NodeModifyIndex": api.server.store.revision})


# status and agent -----------------------------------------------------------------------
async def status_leader(request: web.Request) -> web.Response:
    return json_response(api_of(request).server.leader_addr or "")


async def status_peers(request: web.Request) -> web.Response:
    return json_response(api_of(request).peers())


async def agent_self(request: web.Request) -> web.Response:
    return json_response(api_of(request).agent_self())


async def agent_members(request: web.Request) -> web.Response:
    api = api_of(request)
    info = api.server.info
    return json_response(
        {
            "ServerName": info.name,
            "ServerRegion": info.region,
            "ServerDC": info.datacenter,
            "Members": api.members(),
        }
    )


async def regions(request: web.Request) -> web.Response:
    api = api_of(request)
    return json_response(sorted(set(api.regions) | {api.server.info.region}))


async def alloc_files(request: web.Request) -> web.StreamResponse:
    """``/v1/client/fs/{logs,cat}/:alloc``: served here if this agent's client runs the
    allocation, else relayed to the node that does."""
    api = api_of(request)
    snap = api.server.store.snapshot()
    alloc = find(list(snap.allocs()), request.match_info["alloc_id"], "alloc")
    alloc_dir = api.alloc_dir(alloc.id) if api.alloc_dir else None
    kind = request.match_info["kind"]
    if alloc_dir is not None:
        if kind == "cat":
            return cat_file(request, alloc_dir)
        return await stream_logs(request, alloc_dir, alloc)
    node = snap.node(alloc.node_id)
    if node is None or not node.http_addr or request.headers.get(FORWARDED_HEADER):
        raise NotFoundError(f"allocation {alloc.id}: its node's files are not reachable")
    return await forward(
        request, node.http_addr, f"/v1/client/fs/{kind}/{alloc.id}", {FORWARDED_HEADER: "1"}
    )


async def agent_join(request: web.Request) -> web.Response:
    join = request.app[CONTEXT].join
    addresses = request.query.getall("address", [])
    if not addresses:
        raise ValidationError("address: at least one server address to join is required")
    if join is None:
        raise ValidationError("this agent runs no server that could join others")
    joined = await join(list(addresses))
    return json_response({"num_joined": joined, "error": ""})


async def raft_configuration(request: web.Request) -> web.Response:
    api = api_of(request)
    servers = await api.raft_configuration() if api.raft_configuration else None
    if servers is None:
        servers = [
            {
                "ID": api.server.info.name,
                "Node": api.server.info.name,
                "Address": api.server.info.rpc_addr,
                "Leader": api.server.is_leader,
                "Voter": True,
                "RaftProtocol": "3",
            }
        ]
    return json_response({"Index": api.server.store.revision, "Servers": servers})


def build_nomad_app(holder: NomadAPIHolder) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware], handler_args={"handler_cancellation": True}
    )
    app[CONTEXT] = holder
    r = app.router
    r.add_get("/v1/allocations", list_allocations)
    r.add_get("/v1/allocation/{alloc_id}", get_allocation)
    r.add_get("/v1/evaluations", list_evaluations)
    r.add_get("/v1/evaluation/{eval_id}", get_evaluation)
    r.add_get("/v1/nodes", list_nodes)
    r.add_get("/v1/node/{node_id}", get_node)
    r.add_get("/v1/node/{node_id}/allocations", node_allocations)
    r.add_post("/v1/node/{node_id}/eligibility", node_eligibility)
    r.add_put("/v1/node/{node_id}/eligibility", node_eligibility)
    r.add_get("/v1/status/leader", status_leader)
    r.add_get("/v1/status/peers", status_peers)
    r.add_get("/v1/agent/self", agent_self)
    r.add_get("/v1/agent/members", agent_members)
    r.add_get("/v1/regions", regions)
    r.add_put("/v1/agent/join", agent_join)
    r.add_post("/v1/agent/join", agent_join)
    r.add_get("/v1/operator/raft/configuration", raft_configuration)
    r.add_get("/v1/client/fs/{kind:logs|cat}/{alloc_id}", alloc_files)
    add_job_routes(r)
    add_dispatch_routes(r)
    return app
