"""``steppe job dispatch``, ``steppe job periodic force``, and what ``job status`` and
``job run`` say about periodic and parameterized jobs."""

from __future__ import annotations

import base64
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from steppe.cli._format import kv_block, table
from steppe.cli._http import APIClient, CLIError
from steppe.cli._options import Ctx, address_option, pass_ctx
from steppe.cron import CronError, next_launch_any
from steppe.structs import Job


def job_path(job_id: str, *rest: str) -> str:
    """``/v1/job/<id>/...`` with the ID escaped: children's IDs contain ``/``."""
    return "/".join(("/v1/job", urllib.parse.quote(job_id, safe=""), *rest))


def _next_launch(periodic: dict[str, Any], now: float) -> datetime | None:
    specs = [periodic.get("Spec") or "", *(periodic.get("Specs") or [])]
    try:
        return next_launch_any(
            [s for s in specs if s],
            datetime.fromtimestamp(now, UTC),
            periodic.get("TimeZone") or "UTC",
        )
    except CronError:
        return None


def _from_now(when: datetime, now: float) -> str:
    seconds = max(0, int(when.timestamp() - now))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{text}{secs}s"


def parent_lines(job: dict[str, Any], now: float | None = None) -> list[tuple[str, Any]]:
    """The ``Periodic``/``Parameterized``/``Next Periodic Launch`` lines of ``job status``."""
    periodic = job.get("Periodic")
    parameterized = bool(job.get("ParameterizedJob")) and not job.get("Dispatched")
    lines: list[tuple[str, Any]] = [
        ("Periodic", str(periodic is not None).lower()),
        ("Parameterized", str(parameterized).lower()),
    ]
    if periodic is not None and not parameterized and not job.get("Stop"):
        current = time.time() if now is None else now
        launch = _next_launch(periodic, current) if periodic.get("Enabled", True) else None
        if launch is None:
            lines.append(("Next Periodic Launch", "none"))
        else:
            stamp = launch.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append(
                ("Next Periodic Launch", f"{stamp} ({_from_now(launch, current)} from now)")
            )
    return lines


def is_parent(job: dict[str, Any]) -> bool:
    parameterized = bool(job.get("ParameterizedJob")) and not job.get("Dispatched")
    return job.get("Periodic") is not None or parameterized


def parent_sections(api: APIClient, job: dict[str, Any], summary: dict[str, Any]) -> str:
    """Children summary and list, shown instead of allocations for a parent job."""
    out: list[str] = []
    config = job.get("ParameterizedJob")
    parameterized = bool(config) and not job.get("Dispatched")
    if parameterized and isinstance(config, dict):
        out += [
            "\nParameterized Job",
            kv_block(
                [
                    ("Payload", config.get("Payload") or "optional"),
                    ("Required Metadata", ",".join(config.get("MetaRequired") or [])),
                    ("Optional Metadata", ",".join(config.get("MetaOptional") or [])),
                ]
            ),
        ]
    children = summary.get("Children") or {}
    kind = "Parameterized" if parameterized else "Children"
    out.append(f"\n{kind} Job Summary")
    columns = ["Pending", "Running", "Dead"]
    out.append(table(columns, [[children.get(c, 0) for c in columns]]))
    jobs = api.get("/v1/jobs", prefix=job["ID"] + "/")
    rows = [[j["ID"], j["Status"]] for j in jobs if j.get("ParentID") == job["ID"]]
    out.append("\nDispatched Jobs" if parameterized else "\nPreviously Launched Jobs")
    out.append(table(["ID", "Status"], rows) if rows else "No instances of this job found")
    return "\n".join(out)


def registered_parent(job: Job) -> str:
    """What ``job run`` says for a job that is not scheduled itself."""
    lines = ["Job registration successful"]
    if job.periodic is not None and not job.is_parameterized():
        periodic = {
            "Spec": job.periodic.spec,
            "Specs": list(job.periodic.specs),
            "TimeZone": job.periodic.time_zone,
        }
        launch = _next_launch(periodic, time.time()) if job.periodic.enabled else None
        if launch is not None:
            stamp = launch.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append(f"Approximate next launch time: {stamp}")
    return "\n".join(lines)


def _read_input(source: str | None) -> bytes:
    if source is None:
        return b""
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read input file {source}: {exc.strerror}") from exc


def _meta(pairs: tuple[str, ...]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CLIError(f"-meta {pair!r}: expected KEY=VALUE")
        meta[key] = value
    return meta


@click.command("dispatch")
@click.argument("job_id")
@click.argument("input_file", required=False)
@click.option("-meta", "meta", multiple=True, help="KEY=VALUE metadata (repeatable).")
@click.option("-detach", "detach", is_flag=True, help="Return after dispatching.")
@address_option
@pass_ctx
def dispatch_cmd(
    ctx: Ctx, job_id: str, input_file: str | None, meta: tuple[str, ...], detach: bool
) -> None:
    """Launch a child of a parameterized job, with INPUT_FILE (or - for stdin) as payload."""
    from steppe.cli._jobs import monitor

    payload = _read_input(input_file)
    body = {"Payload": base64.b64encode(payload).decode() or None, "Meta": _meta(meta)}
    api = ctx.nomad()
    result = api.post(job_path(job_id, "dispatch"), body)
    pairs = [("Dispatched Job ID", result["DispatchedJobID"])]
    if result.get("EvalID"):
        pairs.append(("Evaluation ID", result["EvalID"]))
    click.echo(kv_block(pairs))
    if detach or not result.get("EvalID"):
        return
    click.echo()
    ctx.exit_code = monitor(api, result["EvalID"], 60.0)


@click.group("periodic")
def periodic_group() -> None:
    """Interact with periodic jobs."""


@periodic_group.command("force")
@click.argument("job_id")
@click.option("-detach", "detach", is_flag=True, help="Return after launching.")
@address_option
@pass_ctx
def periodic_force(ctx: Ctx, job_id: str, detach: bool) -> None:
    """Launch a child of a periodic job now, whatever its schedule."""
    from steppe.cli._jobs import monitor

    api = ctx.nomad()
    result = api.post(job_path(job_id, "periodic", "force"))
    if detach:
        click.echo("Force periodic successful")
        click.echo(f"Evaluation ID: {result['EvalID']}")
        return
    ctx.exit_code = monitor(api, result["EvalID"], 60.0)
