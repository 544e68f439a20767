"""Read models of Nomad's API derived from state: list stubs, job status and summary.

Job status is derived, never stored: a job is ``running`` while any allocation of it
is meant to run, ``dead`` once stopped with nothing left, ``pending`` before that.
"""

from __future__ import annotations

from typing import Any

from steppe.state import StateSnapshot
from steppe.structs import (
    CLIENT_COMPLETE,
    CLIENT_FAILED,
    CLIENT_LOST,
    CLIENT_PENDING,
    CLIENT_RUNNING,
    Allocation,
    Evaluation,
    Job,
    Node,
    to_builtins,
)


def job_status(snap: StateSnapshot, job: Job) -> str:
    if job.is_parent():
        return "dead" if job.stop else "running"
    allocs = snap.allocs_by_job(job.namespace, job.id)
    if any(not a.terminal() for a in allocs):
        return "running"
    if job.stop:
        return "dead"
    if job.type in ("batch", "sysbatch") and allocs:
        return "dead"
    evals = snap.evals_by_job(job.namespace, job.id)
    if any(not e.terminal() for e in evals):
        return "pending"
    return "dead" if allocs else "pending"


def job_with_status(snap: StateSnapshot, job: Job) -> dict[str, Any]:
    body: dict[str, Any] = to_builtins(job)
    body["Status"] = job_status(snap, job)
    return body


def latest_eval(snap: StateSnapshot, job: Job) -> Evaluation | None:
    evals = snap.evals_by_job(job.namespace, job.id)
    return max(evals, key=lambda e: e.create_index, default=None)


def job_summary(snap: StateSnapshot, job: Job) -> dict[str, Any]:
    groups: dict[str, dict[str, int]] = {
        g.name: {
            "Queued": 0,
            "Complete": 0,
            "Failed": 0,
            "Running": 0,
            "Starting": 0,
            "Lost": 0,
            "Unknown": 0,
        }
        for g in job.task_groups
    }
    for alloc in snap.allocs_by_job(job.namespace, job.id):
        counts = groups.setdefault(alloc.task_group, dict.fromkeys(groups.get("", {}), 0))
        key = {
            CLIENT_PENDING: "Starting",
            CLIENT_RUNNING: "Running",
            CLIENT_COMPLETE: "Complete",
            CLIENT_FAILED: "Failed",
            CLIENT_LOST: "Lost",
        }.get(alloc.client_status, "Unknown")
        if alloc.client_status == CLIENT_PENDING and alloc.desired_status != "run":
            key = "Complete"
        counts[key] = counts.get(key, 0) + 1
    ev = latest_eval(snap, job)
    if ev is not None and not job.stop:
        for group, queued in ev.queued_allocations.items():
            if group in groups:
                groups[group]["Queued"] = queued
    return {
        "JobID": job.id,
        "Namespace": job.namespace,
        "Summary": groups,
        "Children": children_summary(snap, job),
        "CreateIndex": job.create_index,
        "ModifyIndex": snap.table_index("allocs", "jobs"),
    }


def children_summary(snap: StateSnapshot, job: Job) -> dict[str, int]:
    """How many children of a periodic or parameterized job are in each status."""
    counts = {"Pending": 0, "Running": 0, "Dead": 0}
    if job.is_parent():
        for child in snap.jobs(job.namespace):
            if child.parent_id == job.id:
                counts[job_status(snap, child).capitalize()] += 1
    return counts


def job_stub(snap: StateSnapshot, job: Job) -> dict[str, Any]:
    return {
        "ID": job.id,
        "ParentID": job.parent_id,
        "Name": job.name,
        "Namespace": job.namespace,
        "Datacenters": list(job.datacenters),
        "Type": job.type,
        "Priority": job.priority,
        "Periodic": job.periodic is not None,
        "ParameterizedJob": job.is_parameterized(),
        "Stop": job.stop,
        "Status": job_status(snap, job),
        "StatusDescription": job.status_description,
        "JobSummary": job_summary(snap, job),
        "CreateIndex": job.create_index,
        "ModifyIndex": job.modify_index,
        "JobModifyIndex": job.job_modify_index,
        "SubmitTime": job.submit_time,
        "Version": job.version,
    }


def alloc_stub(alloc: Allocation) -> dict[str, Any]:
    return {
        "ID": alloc.id,
        "EvalID": alloc.eval_id,
        "Name": alloc.name,
        "Namespace": alloc.namespace,
        "NodeID": alloc.node_id,
        "NodeName": alloc.node_name,
        "JobID": alloc.job_id,
        "JobVersion": alloc.job_version,
        "TaskGroup": alloc.task_group,
        "DesiredStatus": alloc.desired_status,
        "DesiredDescription": alloc.desired_description,
        "ClientStatus": alloc.client_status,
        "ClientDescription": alloc.client_description,
        "TaskStates": to_builtins(alloc.task_states),
        "FollowupEvalID": alloc.followup_eval_id,
        "NextAllocation": alloc.next_allocation,
        "PreviousAllocation": alloc.previous_allocation,
        "CreateIndex": alloc.create_index,
        "ModifyIndex": alloc.modify_index,
        "AllocModifyIndex": alloc.alloc_modify_index,
        "CreateTime": alloc.create_time,
        "ModifyTime": alloc.modify_time,
    }


def node_stub(node: Node) -> dict[str, Any]:
    return {
        "Address": node.address,
        "ID": node.id,
        "Datacenter": node.datacenter,
        "Name": node.name,
        "NodeClass": node.node_class,
        "NodePool": node.node_pool,
        "Version": node.attributes.get("nomad.version", ""),
        "Drain": node.drain,
        "SchedulingEligibility": node.scheduling_eligibility,
        "Status": node.status,
        "StatusDescription": node.status_description,
        "Drivers": to_builtins(node.drivers),
        "Attributes": {"os.name": node.attributes.get("os.name", "")},
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }


def node_usage(snap: StateSnapshot, node: Node) -> dict[str, int]:
    """Resources the node's live allocations hold, for ``node status``."""
    cpu = memory = 0
    for alloc in snap.allocs_by_node(node.id):
        if not alloc.terminal():
            cpu += alloc.allocated_resources.cpu()
            memory += alloc.allocated_resources.memory_mb()
    return {"CPU": cpu, "MemoryMB": memory}
