"""Which tables the state store keeps, where they live in the backend's key space,
and which secondary indexes each one has.

A table is a key prefix holding one msgpack-encoded struct per key. Other packages
(the catalog) declare their own tables with :class:`TableSpec` and hand them to the
store; the store itself knows no table by name.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from steppe.structs import NO_LOAD, Allocation, Evaluation, Job, Node, NodeLoad, ServerMember

IndexFn = Callable[[Any], Hashable | None]


@dataclass(frozen=True)
class Summary:
    """A running total per key over a table's rows, kept up to date as rows change, so
    a reader gets an aggregate over many rows (what a node's allocations hold) in one
    lookup. Totals are immutable: ``add`` and ``remove`` return new ones."""

    key: IndexFn
    """Which total a row counts towards (None: none)."""
    empty: Any
    """The total of no rows; a total that falls back to it is dropped."""
    add: Callable[[Any, Any], Any]
    """(total, row) -> the total with the row counted."""
    remove: Callable[[Any, Any], Any]
    """(total, row) -> the total without the row, which ``add`` counted before."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    prefix: str
    """Relative to the store's root, ending in ``/``; the rest of the key is the row ID."""
    type: type[Any]
    indexes: dict[str, IndexFn] = field(default_factory=dict)
    """Secondary indexes: name -> function giving the row's index key (None: not indexed)."""
    summaries: dict[str, Summary] = field(default_factory=dict)
    stamp_indexes: bool = True
    """Whether rows carry ``CreateIndex``/``ModifyIndex`` fields the store fills from revisions."""


def job_key(namespace: str, job_id: str) -> str:
    return f"{namespace}/{job_id}"


def job_version_key(namespace: str, job_id: str, version: int) -> str:
    return f"{namespace}/{job_id}/{version:010d}"


JOBS = TableSpec("jobs", "jobs/", Job)
JOB_VERSIONS = TableSpec(
    "job_versions",
    "job_versions/",
    Job,
    indexes={"job": lambda j: (j.namespace, j.id)},
)
NODES = TableSpec("nodes", "nodes/", Node)
ALLOCS = TableSpec(
    "allocs",
    "allocs/",
    Allocation,
    indexes={
        "job": lambda a: (a.namespace, a.job_id),
        "node": lambda a: a.node_id or None,
    },
    summaries={
        "load": Summary(
            key=lambda a: a.node_id or None,
            empty=NO_LOAD,
            add=NodeLoad.plus,
            remove=NodeLoad.minus,
        )
    },
)
EVALS = TableSpec(
    "evals",
    "evals/",
    Evaluation,
    indexes={"job": lambda e: (e.namespace, e.job_id)},
)
NODE_USAGE = TableSpec("node_usage", "node_usage/", int, stamp_indexes=False)
"""One key per node, rewritten by every plan that touches the node, so the plan applier
can compare on its revision and two appliers can never both fill the same room."""

SERVERS = TableSpec("servers", "servers/", ServerMember, stamp_indexes=False)
"""Live scheduler servers, each row under its server's lease."""

SCHEDULER_TABLES = (JOBS, JOB_VERSIONS, NODES, ALLOCS, EVALS, NODE_USAGE, SERVERS)
