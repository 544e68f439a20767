"""``steppe node``, ``alloc``, ``eval``, ``server`` and ``operator`` commands."""

from __future__ import annotations

import sys
from typing import Any

import click

from steppe.cli._format import ago, echo_json, kv_block, short, table, timestamp
from steppe.cli._options import Ctx, address_option, pass_ctx


@click.group("node")
def node_group() -> None:
    """Client nodes: status, resources, drivers."""


@node_group.command("status")
@click.argument("node_id", required=False)
@click.option("-self", "self_", is_flag=True, help="The node of the agent you talk to.")
@click.option("-json", "output_json", is_flag=True)
@click.option("-verbose", "verbose", is_flag=True)
@address_option
@pass_ctx
def node_status(
    ctx: Ctx, node_id: str | None, self_: bool, output_json: bool, verbose: bool
) -> None:
    """List nodes, or show one: datacenter, drivers, resources used / total."""
    api = ctx.nomad()
    if self_:
        agent = api.get("/v1/agent/self")
        node_id = (agent.get("stats", {}).get("client") or {}).get("node_id")
        if not node_id:
            raise click.ClickException("this agent runs no client")
    if node_id is None:
        nodes = api.get("/v1/nodes")
        if output_json:
            echo_json(nodes)
            return
        rows = [
            [
                short(n["ID"], verbose),
                n["NodePool"],
                n["Datacenter"],
                n["Name"],
                n["NodeClass"] or "<none>",
                str(n["Drain"]).lower(),
                n["SchedulingEligibility"],
                n["Status"],
            ]
            for n in nodes
        ]
        headers = ["ID", "Node Pool", "DC", "Name", "Class", "Drain", "Eligibility", "Status"]
        click.echo(table(headers, rows))
        return
    node = api.get(f"/v1/node/{node_id}")
    allocs = api.get(f"/v1/node/{node['ID']}/allocations")
    if output_json:
        echo_json({"Node": node, "Allocations": allocs})
        return
    drivers = sorted(
        d for d, info in node["Drivers"].items() if info.get("Detected") and info.get("Healthy")
    )
    click.echo(
        kv_block(
            [
                ("ID", node["ID"]),
                ("Name", node["Name"]),
                ("Node Pool", node["NodePool"]),
                ("Class", node["NodeClass"] or "<none>"),
                ("DC", node["Datacenter"]),
                ("Drain", str(node["Drain"]).lower()),
                ("Eligibility", node["SchedulingEligibility"]),
                ("Status", node["Status"]),
                ("Address", node["HTTPAddr"]),
                ("Drivers", ",".join(drivers)),
            ]
        )
    )
    total, reserved, used = node["Resources"], node["Reserved"], node["Usage"]
    click.echo("\nAllocated Resources")
    click.echo(
        table(
            ["CPU", "Memory"],
            [
                [
                    f"{used['CPU']}/{total['CPU'] - reserved['CPU']} MHz",
                    f"{used['MemoryMB']} MiB/{total['MemoryMB'] - reserved['MemoryMB']} MiB",
                ]
            ],
        )
    )
    click.echo("\nAllocations")
    running = [a for a in allocs if a["DesiredStatus"] == "run" or verbose]
    if not running:
        click.echo("No allocations placed")
        return
    rows = [
        [
            short(a["ID"], verbose),
            a["JobID"],
            a["TaskGroup"],
            a["DesiredStatus"],
            a["ClientStatus"],
            ago(a["CreateTime"]),
        ]
        for a in running
    ]
    click.echo(table(["ID", "Job ID", "Task Group", "Desired", "Status", "Created"], rows))


@click.group("alloc")
def alloc_group() -> None:
    """Allocations: status, events, logs."""


def _task_lines(name: str, state: dict[str, Any]) -> list[str]:
    lines = [f'\nTask "{name}" is "{state.get("State", "pending")}"']
    lines.append(
        kv_block(
            [
                ("Started At", state.get("StartedAt") or "N/A"),
                ("Finished At", state.get("FinishedAt") or "N/A"),
                ("Total Restarts", state.get("Restarts", 0)),
                ("Last Restart", state.get("LastRestart") or "N/A"),
                ("Failed", str(state.get("Failed", False)).lower()),
            ]
        )
    )
    events = list(reversed(state.get("Events") or []))
    lines.append("\nRecent Events:")
    rows = [
        [timestamp(e["Time"]), e["Type"], e.get("DisplayMessage") or e.get("Message", "")]
        for e in events
    ]
    lines.append(table(["Time", "Type", "Description"], rows))
    return lines


@alloc_group.command("status")
@click.argument("alloc_id")
@click.option("-json", "output_json", is_flag=True)
@click.option("-verbose", "verbose", is_flag=True)
@address_option
@pass_ctx
def alloc_status(ctx: Ctx, alloc_id: str, output_json: bool, verbose: bool) -> None:
    """One allocation: placement, addresses, task states, events and restarts."""
    alloc = ctx.nomad().get(f"/v1/allocation/{alloc_id}")
    if output_json:
        echo_json(alloc)
        return
    click.echo(
        kv_block(
            [
                ("ID", alloc["ID"]),
                ("Eval ID", short(alloc["EvalID"], verbose)),
                ("Name", alloc["Name"]),
                ("Node ID", short(alloc["NodeID"], verbose)),
                ("Node Name", alloc["NodeName"]),
                ("Job ID", alloc["JobID"]),
                ("Job Version", alloc["JobVersion"]),
                ("Client Status", alloc["ClientStatus"]),
                ("Client Description", alloc["ClientDescription"] or "<none>"),
                ("Desired Status", alloc["DesiredStatus"]),
                ("Desired Description", alloc["DesiredDescription"] or "<none>"),
                ("Created", ago(alloc["CreateTime"])),
                ("Modified", ago(alloc["ModifyTime"])),
            ]
        )
    )
    ports = alloc["AllocatedResources"]["Shared"]["Ports"]
    for task in alloc["AllocatedResources"]["Tasks"].values():
        for net in task["Networks"]:
            for port in net["ReservedPorts"] + net["DynamicPorts"]:
                ports.append(
                    {
                        "Label": port["Label"],
                        "Value": port["Value"],
                        "To": port["To"],
                        "HostIP": net["IP"],
                    }
                )
    if ports:
        click.echo("\nAllocation Addresses:")
        rows = [
            [p["Label"], f"{p['HostIP']}:{p['Value']}" + (f" -> {p['To']}" if p["To"] else "")]
            for p in ports
        ]
        click.echo(table(["Label", "Address"], rows))
    for name, state in sorted(alloc["TaskStates"].items()):
        click.echo("\n".join(_task_lines(name, state)))


@alloc_group.command("logs")
@click.argument("alloc_id")
@click.argument("task", required=False)
@click.option("-stderr", "stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.option("-f", "follow", is_flag=True, help="Follow the log as it grows.")
@click.option("-tail", "tail", is_flag=True, help="Start from the end (with -n bytes).")
@click.option("-n", "lines_bytes", default=10240, help="Bytes from the end with -tail.")
@address_option
@pass_ctx
def alloc_logs(
    ctx: Ctx,
    alloc_id: str,
    task: str | None,
    stderr: bool,
    follow: bool,
    tail: bool,
    lines_bytes: int,
) -> None:
    """Print a task's stdout (or -stderr); -f follows."""
    api = ctx.nomad()
    alloc = api.get(f"/v1/allocation/{alloc_id}")
    if task is None:
        tasks = sorted(alloc["TaskStates"]) or [
            t["Name"]
            for g in (alloc.get("Job") or {}).get("TaskGroups", [])
            if g["Name"] == alloc["TaskGroup"]
            for t in g["Tasks"]
        ]
        if len(tasks) != 1:
            raise click.ClickException(
                f"allocation runs several tasks; name one of: {', '.join(tasks)}"
            )
        task = tasks[0]
    params: dict[str, Any] = {
        "task": task,
        "type": "stderr" if stderr else "stdout",
        "plain": "true",
        "follow": "true" if follow else "false",
    }
    if tail:
        params.update(origin="end", offset=lines_bytes)
    out = sys.stdout.buffer
    for chunk in api.stream(f"/v1/client/fs/logs/{alloc['ID']}", **params):
        out.write(chunk)
        out.flush()


@click.group("eval")
def eval_group() -> None:
    """Evaluations."""


@eval_group.command("status")
@click.argument("eval_id")
@click.option("-json", "output_json", is_flag=True)
@address_option
@pass_ctx
def eval_status(ctx: Ctx, eval_id: str, output_json: bool) -> None:
    """One evaluation and its placement failures."""
    from steppe.cli._jobs import failure_lines

    ev = ctx.nomad().get(f"/v1/evaluation/{eval_id}")
    if output_json:
        echo_json(ev)
        return
    click.echo(
        kv_block(
            [
                ("ID", ev["ID"]),
                ("Status", ev["Status"]),
                ("Status Description", ev["StatusDescription"] or ev["Status"]),
                ("Type", ev["Type"]),
                ("TriggeredBy", ev["TriggeredBy"]),
                ("Job ID", ev["JobID"]),
                ("Priority", ev["Priority"]),
                ("Placement Failures", str(bool(ev["FailedTGAllocs"])).lower()),
            ]
        )
    )
    if ev["FailedTGAllocs"]:
        click.echo("\nFailed Placements")
        click.echo("\n".join(failure_lines(ev["FailedTGAllocs"])))


@click.group("server")
def server_group() -> None:
    """Scheduler servers of the region."""


@server_group.command("members")
@click.option("-json", "output_json", is_flag=True)
@address_option
@pass_ctx
def server_members(ctx: Ctx, output_json: bool) -> None:
    """Servers, their region and datacenter, and which one leads."""
    members = ctx.nomad().get("/v1/agent/members")
    if output_json:
        echo_json(members)
        return
    rows = [
        [
            m["Name"],
            m["Addr"],
            m["Port"],
            m["Status"],
            str(m["Tags"].get("leader") == "true").lower(),
            m["Tags"].get("build", ""),
            m["Tags"].get("dc", ""),
            m["Tags"].get("region", ""),
        ]
        for m in members["Members"]
    ]
    click.echo(
        table(
            ["Name", "Address", "Port", "Status", "Leader", "Build", "Datacenter", "Region"], rows
        )
    )


@server_group.command("join")
@click.argument("addresses", nargs=-1, required=True)
@address_option
@pass_ctx
def server_join(ctx: Ctx, addresses: tuple[str, ...]) -> None:
    """Tell this server about other servers so they form one cluster."""
    result = ctx.nomad().put("/v1/agent/join", address=list(addresses))
    click.echo(f"Joined {result.get('num_joined', 0)} servers successfully")
    if result.get("error"):
        raise click.ClickException(result["error"])


@click.group("operator")
def operator_group() -> None:
    """Cluster-level operations."""


@operator_group.group("raft")
def raft_group() -> None:
    """The replicated store's membership."""


@raft_group.command("list-peers")
@click.option("-json", "output_json", is_flag=True)
@address_option
@pass_ctx
def raft_list_peers(ctx: Ctx, output_json: bool) -> None:
    """Members of the region's replicated store, and which one leads."""
    config = ctx.nomad().get("/v1/operator/raft/configuration")
    if output_json:
        echo_json(config)
        return
    rows = [
        [
            s["Node"],
            s["ID"],
            s["Address"],
            "leader" if s["Leader"] else "follower",
            str(s["Voter"]).lower(),
            s.get("RaftProtocol", "3"),
        ]
        for s in config["Servers"]
    ]
    click.echo(table(["Node", "ID", "Address", "State", "Voter", "RaftProtocol"], rows))
