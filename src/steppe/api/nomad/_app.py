"""The Nomad-compatible HTTP API (port 4646).

Paths, JSON names, blocking-query headers and status codes follow Nomad's API, so
``curl`` habits and existing Nomad client libraries work against Steppe unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from steppe import jobspec
from steppe.api._forward import FORWARDED_HEADER, forward
from steppe.api._http import (
    BlockingQuery,
    blocking_query,
    error_middleware,
    flag,
    json_response,
    read_json,
)
from steppe.api.nomad import _views as views
from steppe.api.nomad._dispatch import add_routes as add_dispatch_routes
from steppe.api.nomad._logs import cat_file, stream_logs
from steppe.errors import BackendError, NotFoundError, ValidationError
from steppe.server import Server
from steppe.state import StateSnapshot
from steppe.structs import Allocation, Job, to_builtins

CONTEXT: web.AppKey[NomadAPIHolder] = web.AppKey("nomad_api")


@dataclass
class NomadAPIHolder:
    """The API's context, set once the server's store is ready: a server that is still
    forming its cluster already answers peering requests, and everything else with 503."""

    api: NomadAPI | None = None


@dataclass
class NomadAPI:
    """What the HTTP layer needs from the agent it serves."""

    server: Server
    agent_self: Callable[[], dict[str, Any]]
    members: Callable[[], list[dict[str, Any]]]
    peers: Callable[[], list[str]]
    alloc_dir: Callable[[str], Any] | None = None
    """Returns the local directory of an allocation this agent's client runs, or None."""
    regions: list[str] = field(default_factory=list)
    join: Callable[[list[str]], Awaitable[int]] | None = None
    raft_configuration: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None

    def leader_headers(self, index: int) -> dict[str, str]:
        return {
            "X-Nomad-Index": str(max(index, 1)),
            "X-Nomad-KnownLeader": "true" if self.server.leader_addr else "false",
            "X-Nomad-LastContact": "0",
        }

    async def read(self, request: web.Request, tables: list[str]) -> StateSnapshot:
        """A snapshot honouring ``?index=&wait=`` (blocking) and ``?consistent``."""
        query: BlockingQuery = blocking_query(request)
        store = self.server.store
        if flag(request, "consistent"):
            await store.consistent_snapshot()
        if query.blocking:
            return await store.block(tables, query.index, query.wait)
        return store.snapshot()

    def respond(self, snap: StateSnapshot, tables: list[str], body: Any) -> web.Response:
        return json_response(body, headers=self.leader_headers(snap.table_index(*tables)))


def _api(request: web.Request) -> NomadAPI:
    api = request.app[CONTEXT].api
    if api is None:
        raise BackendError("No cluster leader: the servers have not formed their store yet")
    return api


def _namespace(request: web.Request) -> str:
    return request.query.get("namespace", "default") or "default"


async def _job_from_body(request: web.Request) -> Job:
    body = await read_json(request)
    job = jobspec.parse_job_json(body)
    job_id = request.match_info.get("job_id")
    if job_id is not None and job.id != job_id:
        raise ValidationError(f"Job ID does not match the URL: {job.id!r} != {job_id!r}")
    return job


# jobs ---------------------------------------------------------------------------------
async def list_jobs(request: web.Request) -> web.Response:
    api = _api(request)
    tables = ["jobs", "allocs", "evals"]
    snap = await api.read(request, tables)
    prefix = request.query.get("prefix", "")
    ns = _namespace(request)
    jobs = sorted(
        (j for j in snap.jobs(None if ns == "*" else ns) if j.id.startswith(prefix)),
        key=lambda j: j.id,
    )
    return api.respond(snap, tables, [views.job_stub(snap, j) for j in jobs])


async def register_job(request: web.Request) -> web.Response:
    api = _api(request)
    job = await _job_from_body(request)
    result = await api.server.endpoints.register_job(job)
    return json_response(
        {
            "EvalID": result.eval_id,
            "EvalCreateIndex": result.eval_create_index,
            "JobModifyIndex": result.job_modify_index,
            "Warnings": result.warnings,
            "Index": result.eval_create_index,
            "KnownLeader": True,
            "LastContact": 0,
        },
        headers=api.leader_headers(result.eval_create_index),
    )


async def parse_job(request: web.Request) -> web.Response:
    body = msgspec.json.decode(await read_json(request))
    if not isinstance(body, dict) or not isinstance(body.get("JobHCL"), str):
        raise ValidationError('request body: expected {"JobHCL": "<job file text>"}')
    return json_response(jobspec.parse_job(body["JobHCL"], "JobHCL"))


def _job_or_404(snap: StateSnapshot, request: web.Request) -> Job:
    job_id = request.match_info["job_id"]
    job = snap.job(_namespace(request), job_id)
    if job is None:
        raise NotFoundError("job not found")
    return job


async def get_job(request: web.Request) -> web.Response:
    api = _api(request)
    tables = ["jobs", "allocs", "evals"]
    snap = await api.read(request, tables)
    job = _job_or_404(snap, request)
    return api.respond(snap, tables, views.job_with_status(snap, job))


async def deregister_job(request: web.Request) -> web.Response:
    api = _api(request)
    result = await api.server.endpoints.deregister_job(
        _namespace(request), request.match_info["job_id"], flag(request, "purge")
    )
    return json_response(
        {
            "EvalID": result.eval_id,
            "EvalCreateIndex": result.eval_create_index,
            "JobModifyIndex": result.job_modify_index,
        },
        headers=api.leader_headers(result.eval_create_index),
    )


async def job_allocations(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["allocs"])
    allocs = sorted(
        snap.allocs_by_job(_namespace(request), request.match_info["job_id"]),
        key=lambda a: a.create_index,
        reverse=True,
    )
    return api.respond(snap, ["allocs"], [views.alloc_stub(a) for a in allocs])


async def job_evaluations(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["evals"])
    evals = sorted(
        snap.evals_by_job(_namespace(request), request.match_info["job_id"]),
        key=lambda e: e.create_index,
        reverse=True,
    )
    return api.respond(snap, ["evals"], evals)


async def job_versions(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["job_versions"])
    job = _job_or_404(snap, request)
    versions = snap.job_versions(job.namespace, job.id)
    return api.respond(snap, ["job_versions"], {"Versions": versions, "Diffs": None})


async def job_summary(request: web.Request) -> web.Response:
    api = _api(request)
    tables = ["jobs", "allocs", "evals"]
    snap = await api.read(request, tables)
    return api.respond(snap, tables, views.job_summary(snap, _job_or_404(snap, request)))


async def plan_job(request: web.Request) -> web.Response:
    api = _api(request)
    job = await _job_from_body(request)
    return json_response(await api.server.preview_plan(job))


# allocations, evaluations, nodes -------------------------------------------------------
def _by_prefix(items: list[Any], request: web.Request) -> list[Any]:
    prefix = request.query.get("prefix", "")
    return [i for i in items if i.id.startswith(prefix)] if prefix else items


async def list_allocations(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["allocs"])
    allocs = sorted(_by_prefix(list(snap.allocs()), request), key=lambda a: -a.create_index)
    return api.respond(snap, ["allocs"], [views.alloc_stub(a) for a in allocs])


def _find(items: list[Any], ident: str, what: str) -> Any:
    """By full ID, or by a unique prefix of it (as the CLI allows short IDs)."""
    exact = [i for i in items if i.id == ident]
    if exact:
        return exact[0]
    matches = [i for i in items if i.id.startswith(ident)] if len(ident) >= 1 else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"{what} not found")
    raise ValidationError(f"{what} ID {ident!r} is ambiguous: {len(matches)} match")


async def get_allocation(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["allocs"])
    alloc: Allocation = _find(list(snap.allocs()), request.match_info["alloc_id"], "alloc")
    return api.respond(snap, ["allocs"], snap.alloc_with_job(alloc))


async def list_evaluations(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["evals"])
    evals = sorted(_by_prefix(list(snap.evals()), request), key=lambda e: -e.create_index)
    return api.respond(snap, ["evals"], evals)


async def get_evaluation(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["evals"])
    return api.respond(
        snap, ["evals"], _find(list(snap.evals()), request.match_info["eval_id"], "eval")
    )


async def list_nodes(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["nodes"])
    nodes = sorted(_by_prefix(list(snap.nodes()), request), key=lambda n: n.name)
    return api.respond(snap, ["nodes"], [views.node_stub(n) for n in nodes])


async def get_node(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["nodes"])
    node = _find(list(snap.nodes()), request.match_info["node_id"], "node")
    body = to_builtins(node)
    body["Usage"] = views.node_usage(snap, node)
    return api.respond(snap, ["nodes"], body)


async def node_allocations(request: web.Request) -> web.Response:
    api = _api(request)
    snap = await api.read(request, ["allocs", "nodes"])
    node = _find(list(snap.nodes()), request.match_info["node_id"], "node")
    allocs = [snap.alloc_with_job(a) for a in snap.allocs_by_node(node.id)]
    return api.respond(snap, ["allocs"], allocs)


async def node_eligibility(request: web.Request) -> web.Response:
    api = _api(request)
    body = msgspec.json.decode(await read_json(request))
    eligibility = body.get("Eligibility") if isinstance(body, dict) else None
    if eligibility not in ("eligible", "ineligible"):
        raise ValidationError('Eligibility: must be "eligible" or "ineligible"')
    snap = api.server.store.snapshot()
    node = _find(list(snap.nodes()), request.match_info["node_id"], "node")
    await api.server.endpoints.update_node_eligibility(node.id, eligibility == "eligible")
    return json_response({"NodeModifyIndex": api.server.store.revision})


# status and agent -----------------------------------------------------------------------
async def status_leader(request: web.Request) -> web.Response:
    return json_response(_api(request).server.leader_addr or "")


async def status_peers(request: web.Request) -> web.Response:
    return json_response(_api(request).peers())


async def agent_self(request: web.Request) -> web.Response:
    return json_response(_api(request).agent_self())


async def agent_members(request: web.Request) -> web.Response:
    api = _api(request)
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
    api = _api(request)
    return json_response(sorted(set(api.regions) | {api.server.info.region}))


async def alloc_files(request: web.Request) -> web.StreamResponse:
    """``/v1/client/fs/{logs,cat}/:alloc``: served here if this agent's client runs the
    allocation, else relayed to the node that does."""
    api = _api(request)
    snap = api.server.store.snapshot()
    alloc = _find(list(snap.allocs()), request.match_info["alloc_id"], "alloc")
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
    api = _api(request)
    addresses = request.query.getall("address", [])
    if not addresses:
        raise ValidationError("address: at least one server address to join is required")
    if api.join is None:
        raise ValidationError("this agent runs no server that could join others")
    joined = await api.join(list(addresses))
    return json_response({"num_joined": joined, "error": ""})


async def raft_configuration(request: web.Request) -> web.Response:
    api = _api(request)
    if api.raft_configuration is None:
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
    else:
        servers = await api.raft_configuration()
    return json_response({"Index": api.server.store.revision, "Servers": servers})


def build_nomad_app(holder: NomadAPIHolder) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware], handler_args={"handler_cancellation": True}
    )
    app[CONTEXT] = holder
    r = app.router
    r.add_get("/v1/jobs", list_jobs)
    r.add_put("/v1/jobs", register_job)
    r.add_post("/v1/jobs", register_job)
    r.add_post("/v1/jobs/parse", parse_job)
    r.add_put("/v1/jobs/parse", parse_job)
    r.add_get("/v1/job/{job_id}", get_job)
    r.add_put("/v1/job/{job_id}", register_job)
    r.add_post("/v1/job/{job_id}", register_job)
    r.add_delete("/v1/job/{job_id}", deregister_job)
    r.add_get("/v1/job/{job_id}/allocations", job_allocations)
    r.add_get("/v1/job/{job_id}/evaluations", job_evaluations)
    r.add_get("/v1/job/{job_id}/versions", job_versions)
    r.add_get("/v1/job/{job_id}/summary", job_summary)
    r.add_put("/v1/job/{job_id}/plan", plan_job)
    r.add_post("/v1/job/{job_id}/plan", plan_job)
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
    add_dispatch_routes(r, _api)
    return app
