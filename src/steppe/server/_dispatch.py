"""Parameterized jobs: ``job dispatch`` launches a child carrying a payload and meta.

The child is ``<parent>/dispatch-<unix time>-<8 hex>``, a copy of the parent marked
``Dispatched`` with the payload and the dispatch meta merged into its own, registered
like any job. The rules checked here are Nomad's: the payload as the parent's
``payload`` mode says and at most 16 KiB, every ``meta_required`` key given and no key
outside ``meta_required`` + ``meta_optional``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from steppe.errors import ConflictError, NotFoundError, Problem, ValidationError
from steppe.server._endpoints import Endpoints
from steppe.server._periodic import derive_child, register_child
from steppe.structs import TRIGGER_JOB_REGISTER, Job

DISPATCH_INFIX = "/dispatch-"
PAYLOAD_LIMIT = 16 * 1024


@dataclass(frozen=True)
class DispatchResult:
    dispatched_job_id: str
    eval_id: str
    eval_create_index: int
    job_create_index: int


def check_dispatch(parent: Job, payload: bytes, meta: dict[str, str]) -> list[str]:
    """Every reason ``parent`` cannot be dispatched with this payload and meta."""
    config = parent.parameterized_job
    if config is None or parent.dispatched:
        return [f"job {parent.id!r} is not a parameterized job"]
    problems: list[str] = []
    if parent.stop:
        problems.append(f"job {parent.id!r} is stopped")
    if config.payload == "forbidden" and payload:
        problems.append("Payload: this job does not take a payload (payload = forbidden)")
    elif config.payload == "required" and not payload:
        problems.append("Payload: this job requires a payload (payload = required)")
    if len(payload) > PAYLOAD_LIMIT:
        problems.append(f"Payload: {len(payload)} bytes exceeds the limit of {PAYLOAD_LIMIT}")
    missing = sorted(set(config.meta_required) - set(meta))
    if missing:
        problems.append(f"Meta: required keys missing: {', '.join(missing)}")
    allowed = set(config.meta_required) | set(config.meta_optional)
    unknown = sorted(set(meta) - allowed)
    if unknown:
        permitted = ", ".join(sorted(allowed)) or "none"
        problems.append(f"Meta: keys not allowed: {', '.join(unknown)} (allowed: {permitted})")
    return problems


async def dispatch_job(
    endpoints: Endpoints,
    namespace: str,
    job_id: str,
    payload: bytes,
    meta: dict[str, str],
    *,
    clock: Callable[[], float] = time.time,
    suffix: Callable[[], str] = lambda: uuid.uuid4().hex[:8],
) -> DispatchResult:
    parent = endpoints.store.snapshot().job(namespace, job_id)
    if parent is None:
        raise NotFoundError(f"job not found: {job_id}")
    problems = check_dispatch(parent, payload, meta)
    if problems:
        raise ValidationError([Problem("", p) for p in problems])
    now = clock()
    child_id = f"{parent.id}{DISPATCH_INFIX}{int(now)}-{suffix()}"
    child = derive_child(
        parent,
        child_id,
        dispatched=True,
        payload=payload or None,
        meta={**parent.meta, **meta},
    )
    result = await register_child(endpoints, child, TRIGGER_JOB_REGISTER, int(now * 1e9))
    if result is None:
        raise ConflictError(f"job {child_id!r} exists already; try again")
    return DispatchResult(
        child_id, result.eval_id, result.eval_create_index, result.job_modify_index
    )
