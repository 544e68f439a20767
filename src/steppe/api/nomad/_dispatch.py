"""``/v1/job/:id/dispatch`` and ``/v1/job/:id/periodic/force``: launching children of
parameterized and periodic jobs, with Nomad's request and response shapes."""

from __future__ import annotations

import binascii
import time
from base64 import b64decode
from typing import Any

import msgspec
from aiohttp import web

from steppe.api._http import json_response
from steppe.api.nomad._context import api_of, namespace
from steppe.errors import ValidationError
from steppe.server import dispatch_job, force_launch


def parse_dispatch_body(raw: bytes) -> tuple[bytes, dict[str, str]]:
    """``{"Payload": "<base64>", "Meta": {"k": "v"}}`` (both optional) to bytes and meta."""
    try:
        body: Any = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError as exc:
        raise ValidationError(f"request body: not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationError('request body: expected {"Payload": "<base64>", "Meta": {...}}')
    encoded = body.get("Payload") or ""
    if not isinstance(encoded, str):
        raise ValidationError("Payload: expected a base64 string")
    try:
        payload = b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(f"Payload: not valid base64: {exc}") from exc
    meta = body.get("Meta") or {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise ValidationError("Meta: expected an object of string keys and string values")
    return payload, meta


async def dispatch(request: web.Request) -> web.Response:
    api = api_of(request)
    payload, meta = parse_dispatch_body(await request.read())
    result = await dispatch_job(
        api.server.endpoints, namespace(request), request.match_info["job_id"], payload, meta
    )
    return json_response(
        {
            "DispatchedJobID": result.dispatched_job_id,
            "EvalID": result.eval_id,
            "EvalCreateIndex": result.eval_create_index,
            "JobCreateIndex": result.job_create_index,
            "Index": result.job_create_index,
        },
        headers=api.leader_headers(result.job_create_index),
    )


async def force(request: web.Request) -> web.Response:
    api = api_of(request)
    result = await force_launch(
        api.server.endpoints, namespace(request), request.match_info["job_id"], time.time()
    )
    return json_response(
        {
            "EvalID": result.eval_id,
            "EvalCreateIndex": result.eval_create_index,
            "Index": result.eval_create_index,
        },
        headers=api.leader_headers(result.eval_create_index),
    )


def add_routes(router: web.UrlDispatcher) -> None:
    for method in (router.add_put, router.add_post):
        method("/v1/job/{job_id}/dispatch", dispatch)
        method("/v1/job/{job_id}/periodic/force", force)
