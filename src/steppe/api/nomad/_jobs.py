"""``/v1/jobs`` and ``/v1/job/:id/...``: submitting, reading, planning and stopping jobs."""

from __future__ import annotations

import msgspec
from aiohttp import web

from steppe import jobspec
from steppe.api._http import flag, json_response, read_json
from steppe.api.nomad import _views as views
from steppe.api.nomad._context import api_of, namespace
from steppe.errors import NotFoundError, ValidationError
from steppe.state import StateSnapshot
from steppe.structs import Job


async def _job_from_body(request: web.Request) -> Job:
    body = await read_json(request)
    job = jobspec.parse_job_json(body)
    job_id = request.match_info.get("job_id")
    if job_id is not None and job.id != job_id:
        raise ValidationError(f"Job ID does not match the URL: {job.id!r} != {job_id!r}")
    return job


# jobs ---------------------------------------------------------------------------------
async def list_jobs(request: web.Request) -> web.Response:
    api = api_of(request)
    tables = ["jobs", "allocs", "evals"]
    snap = await api.read(request, tables)
    prefix = request.query.get("prefix", "")
    ns = namespace(request)
    jobs = sorted(
        (j for j in snap.jobs(None if ns == "*" else ns) if j.id.startswith(prefix)),
        key=lambda j: j.id,
    )
    return api.respond(snap, tables, [views.job_stub(snap, j) for j in jobs])


async def register_job(request: web.Request) -> web.Response:
    api = api_of(request)
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
    job = snap.job(namespace(request), job_id)
    if job is None:
        raise NotFoundError("job not found")
    return job


async def get_job(request: web.Request) -> web.Response:
    api = api_of(request)
    tables = ["jobs", "allocs", "evals"]
    snap = await api.read(request, tables)
    job = _job_or_404(snap, request)
    return api.respond(snap, tables, views.job_with_status(snap, job))


async def deregister_job(request: web.Request) -> web.Response:
    api = api_of(request)
    result = await api.server.endpoints.deregister_job(
        namespace(request), request.match_info["job_id"], flag(request, "purge")
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
    api = api_of(request)
    snap = await api.read(request, ["allocs"])
    allocs = sorted(
        snap.allocs_by_job(namespace(request), request.match_info["job_id"]),
        key=lambda a: a.create_index,
        reverse=True,
    )
    return api.respond(snap, ["allocs"], [views.alloc_stub(a) for a in allocs])


async def job_evaluations(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["evals"])
    evals = sorted(
        snap.evals_by_job(namespace(request), request.match_info["job_id"]),
        key=lambda e: e.create_index,
        reverse=True,
    )
    return api.respond(snap, ["evals"], evals)


async def job_versions(request: web.Request) -> web.Response:
    api = api_of(request)
    snap = await api.read(request, ["job_versions"])
    job = _job_or_404(snap, request)
    versions = snap.job_versions(job.namespace, job.id)
    return api.respond(snap, ["job_versions"], {"Versions": versions, "Diffs": None})


async def job_summary(request: web.Request) -> web.Response:
    api = api_of(request)
    tables = ["jobs", "allocs", "evals"]
    snap = await api.read(request, tables)
    return api.respond(snap, tables, views.job_summary(snap, _job_or_404(snap, request)))


async def plan_job(request: web.Request) -> web.Response:
    api = api_of(request)
    job = await _job_from_body(request)
    return json_response(await api.server.preview_plan(job))


# allocations, evaluations, nodes -------------------------------------------------------


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/jobs", list_jobs)
    router.add_put("/v1/jobs", register_job)
    router.add_post("/v1/jobs", register_job)
    router.add_post("/v1/jobs/parse", parse_job)
    router.add_put("/v1/jobs/parse", parse_job)
    router.add_get("/v1/job/{job_id}", get_job)
    router.add_put("/v1/job/{job_id}", register_job)
    router.add_post("/v1/job/{job_id}", register_job)
    router.add_delete("/v1/job/{job_id}", deregister_job)
    router.add_get("/v1/job/{job_id}/allocations", job_allocations)
    router.add_get("/v1/job/{job_id}/evaluations", job_evaluations)
    router.add_get("/v1/job/{job_id}/versions", job_versions)
    router.add_get("/v1/job/{job_id}/summary", job_summary)
    router.add_put("/v1/job/{job_id}/plan", plan_job)
    router.add_post("/v1/job/{job_id}/plan", plan_job)
