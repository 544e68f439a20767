"""``steppe job ...`` (and the short forms ``run``, ``status``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from steppe import jobspec
from steppe.cli._format import ago, echo_json, kv_block, short, table, timestamp
from steppe.cli._http import APIClient, CLIError
from steppe.cli._options import Ctx, address_option, pass_ctx
from steppe.cli._periodic import (
    dispatch_cmd,
    is_parent,
    job_path,
    parent_lines,
    parent_sections,
    periodic_group,
    registered_parent,
)
from steppe.errors import ValidationError
from steppe.scheduler import describe_failures
from steppe.structs import AllocMetric, Job, convert, to_builtins

TERMINAL_EVAL = ("complete", "failed", "canceled", "blocked")


def load_job(path: str) -> Job:
    """Parses a job file here, so errors name the user's file and line."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise CLIError(f"cannot read job file {path}: {exc.strerror}") from exc
    if text.lstrip().startswith("{"):
        return jobspec.parse_job_json(text.encode())
    return jobspec.parse_job(text, str(file))


def failure_lines(metrics: dict[str, Any]) -> list[str]:
    lines = []
    for group, raw in sorted(metrics.items()):
        failed = raw.get("CoalescedFailures", 0) + 1
        lines.append(f'Task Group "{group}" (failed to place {failed} allocation(s)):')
        lines.extend(f"  * {line}" for line in describe_failures(convert(raw, AllocMetric)))
    return lines


def monitor(api: APIClient, eval_id: str, timeout: float) -> int:
    """Follows an evaluation and the allocations it creates until they start."""
    click.echo(f'==> Monitoring evaluation "{short(eval_id)}"')
    index, status = 0, ""
    ev: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev, headers = api.request(
            "GET", f"/v1/evaluation/{eval_id}", {"index": index, "wait": "5s"}
        )
        index = int(headers.get("X-Nomad-Index", index))
        if ev["Status"] != status:
            if not status:
                click.echo(f'    Evaluation triggered by job "{ev["JobID"]}"')
            else:
                click.echo(f'    Evaluation status changed: "{status}" -> "{ev["Status"]}"')
            status = ev["Status"]
        if status in TERMINAL_EVAL:
            break
    code = 0
    allocs = [a for a in api.get(job_path(ev["JobID"], "allocations")) if a["EvalID"] == eval_id]
    for alloc in allocs:
        click.echo(
            f'    Allocation "{short(alloc["ID"])}" created: node "{short(alloc["NodeID"])}", '
            f'group "{alloc["TaskGroup"]}"'
        )
    if ev.get("FailedTGAllocs"):
        click.echo("==> Placement failures:")
        for line in failure_lines(ev["FailedTGAllocs"]):
            click.echo("    " + line)
        code = 2
    click.echo(f'==> Evaluation "{short(eval_id)}" finished with status "{status}"')
    return code | watch_allocs_start(
        api, [a["ID"] for a in allocs if a["DesiredStatus"] == "run"], deadline
    )


def watch_allocs_start(api: APIClient, alloc_ids: list[str], deadline: float) -> int:
    pending = {a: "pending" for a in alloc_ids}
    index = 0
    while pending and time.monotonic() < deadline:
        _, headers = api.request("GET", "/v1/allocations", {"index": index, "wait": "2s"})
        index = int(headers.get("X-Nomad-Index", index))
        for alloc_id in list(pending):
            alloc = api.get(f"/v1/allocation/{alloc_id}")
            if alloc["ClientStatus"] != pending[alloc_id]:
                click.echo(
                    f'    Allocation "{short(alloc_id)}" status changed: '
                    f'"{pending[alloc_id]}" -> "{alloc["ClientStatus"]}"'
                )
                pending[alloc_id] = alloc["ClientStatus"]
            if alloc["ClientStatus"] != "pending":
                if alloc["ClientStatus"] == "running":
                    del pending[alloc_id]
                elif alloc["ClientStatus"] in ("failed", "lost"):
                    return 2
                else:
                    del pending[alloc_id]
    return 0


@click.group("job")
def job_group() -> None:
    """Submit, inspect and stop jobs."""


def run_cmd(ctx: Ctx, path: str, detach: bool, output_json: bool, timeout: float) -> None:
    job = load_job(path)
    if output_json:
        echo_json(to_builtins(job))
        return
    api = ctx.nomad()
    result = api.put("/v1/jobs", {"Job": to_builtins(job)})
    if not result["EvalID"]:
        click.echo(registered_parent(job))
        return
    if detach:
        click.echo("Job registration successful")
        click.echo(f"Evaluation ID: {result['EvalID']}")
        return
    ctx.exit_code = monitor(api, result["EvalID"], timeout)


def run_options(fn: Any) -> Any:
    """The options shared by ``job run`` and its short form ``run``."""
    for option in reversed(
        [
            click.argument("path", type=click.Path(dir_okay=False)),
            click.option("-detach", "detach", is_flag=True, help="Return after submitting."),
            click.option(
                "-output", "output_json", is_flag=True, help="Print the job as JSON only."
            ),
            click.option(
                "-timeout", "timeout", default=60.0, help="Seconds to follow allocations."
            ),
            address_option,
        ]
    ):
        fn = option(fn)
    return fn


@job_group.command("run")
@run_options
@pass_ctx
def job_run(ctx: Ctx, path: str, detach: bool, output_json: bool, timeout: float) -> None:
    """Submit a job file (HCL or JSON) and follow its evaluation."""
    run_cmd(ctx, path, detach, output_json, timeout)


@job_group.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
def job_validate(path: str) -> None:
    """Check a job file; report every problem, with file, line and field."""
    try:
        load_job(path)
    except ValidationError as exc:
        click.echo("Job validation errors:", err=True)
        for problem in exc.problems:
            click.echo(f"  * {problem}", err=True)
        raise SystemExit(1) from exc
    click.echo("Job validation successful")


@job_group.command("plan")
@click.argument("path", type=click.Path(dir_okay=False))
@address_option
@pass_ctx
def job_plan(ctx: Ctx, path: str) -> None:
    """Dry run: what would change, and would it fit."""
    job = load_job(path)
    plan = ctx.nomad().put(f"/v1/job/{job.id}/plan", {"Job": to_builtins(job), "Diff": True})
    updates = (plan.get("Annotations") or {}).get("DesiredTGUpdates") or {}
    click.echo(f'+/- Job: "{job.id}"')
    for group, counts in sorted(updates.items()):
        parts = [f"{n} {k.lower()}" for k, n in counts.items() if n]
        click.echo(f'    Task Group: "{group}" ({", ".join(parts) or "no change"})')
    click.echo()
    click.echo("Scheduler dry-run:")
    if plan.get("FailedTGAllocs"):
        click.echo("- WARNING: Failed to place all allocations.")
        for line in failure_lines(plan["FailedTGAllocs"]):
            click.echo("  " + line)
    else:
        click.echo("- All tasks successfully allocated.")
    click.echo()
    click.echo(f"Job Modify Index: {plan.get('JobModifyIndex', 0)}")
    changes = ("Place", "Stop", "Migrate", "DestructiveUpdate", "Canary")
    if any(counts.get(k) for counts in updates.values() for k in changes):
        ctx.exit_code = 1  # Nomad's convention: allocations would be created or destroyed


def status_cmd(ctx: Ctx, job_id: str | None, output_json: bool, verbose: bool) -> None:
    api = ctx.nomad()
    if job_id is None:
        jobs = api.get("/v1/jobs")
        if output_json:
            echo_json(jobs)
        elif not jobs:
            click.echo("No running jobs")
        else:
            rows = [
                [j["ID"], j["Type"], j["Priority"], j["Status"], timestamp(j["SubmitTime"])]
                for j in jobs
            ]
            click.echo(table(["ID", "Type", "Priority", "Status", "Submit Date"], rows))
        return
    job = api.get(job_path(job_id))
    summary = api.get(job_path(job_id, "summary"))
    allocs = api.get(job_path(job_id, "allocations"))
    evals = api.get(job_path(job_id, "evaluations"))
    if output_json:
        echo_json({"Job": job, "Summary": summary, "Allocations": allocs, "Evaluations": evals})
        return
    click.echo(
        kv_block(
            [
                ("ID", job["ID"]),
                ("Name", job["Name"]),
                ("Submit Date", timestamp(job["SubmitTime"])),
                ("Type", job["Type"]),
                ("Priority", job["Priority"]),
                ("Datacenters", ",".join(job["Datacenters"])),
                ("Namespace", job["Namespace"]),
                ("Status", job["Status"]),
                *parent_lines(job),
            ]
        )
    )
    if is_parent(job):
        click.echo(parent_sections(api, job, summary))
        return
    click.echo("\nSummary")
    columns = ["Queued", "Starting", "Running", "Failed", "Complete", "Lost", "Unknown"]
    rows = [[g, *(c.get(k, 0) for k in columns)] for g, c in sorted(summary["Summary"].items())]
    click.echo(table(["Task Group", *columns], rows))
    latest = evals[0] if evals else None
    if latest and latest.get("FailedTGAllocs"):
        click.echo("\nPlacement Failure")
        click.echo("\n".join(failure_lines(latest["FailedTGAllocs"])))
    click.echo("\nAllocations")
    if not allocs:
        click.echo("No allocations placed")
        return
    rows = [
        [
            short(a["ID"], verbose),
            short(a["NodeID"], verbose),
            a["TaskGroup"],
            a["JobVersion"],
            a["DesiredStatus"],
            a["ClientStatus"],
            ago(a["CreateTime"]),
            ago(a["ModifyTime"]),
        ]
        for a in allocs
    ]
    click.echo(
        table(
            ["ID", "Node ID", "Task Group", "Version", "Desired", "Status", "Created", "Modified"],
            rows,
        )
    )


@job_group.command("status")
@click.argument("job_id", required=False)
@click.option("-json", "output_json", is_flag=True)
@click.option("-verbose", "verbose", is_flag=True)
@address_option
@pass_ctx
def job_status(ctx: Ctx, job_id: str | None, output_json: bool, verbose: bool) -> None:
    """Show all jobs, or one job's summary, placement failures and allocations."""
    status_cmd(ctx, job_id, output_json, verbose)


@job_group.command("stop")
@click.argument("job_id")
@click.option("-purge", "purge", is_flag=True, help="Also forget the job and its history.")
@click.option("-detach", "detach", is_flag=True)
@click.option("-yes", "yes", is_flag=True)
@address_option
@pass_ctx
def job_stop(ctx: Ctx, job_id: str, purge: bool, detach: bool, yes: bool) -> None:
    """Stop a job's allocations (and with -purge, remove the job)."""
    api = ctx.nomad()
    result = api.delete(job_path(job_id), purge="true" if purge else None)
    if detach:
        click.echo(result["EvalID"])
        return
    ctx.exit_code = monitor(api, result["EvalID"], 30.0)


@job_group.command("inspect")
@click.argument("job_id")
@address_option
@pass_ctx
def job_inspect(ctx: Ctx, job_id: str) -> None:
    """Print a job as the servers store it (JSON)."""
    echo_json({"Job": ctx.nomad().get(job_path(job_id))})


job_group.add_command(dispatch_cmd)
job_group.add_command(periodic_group)
