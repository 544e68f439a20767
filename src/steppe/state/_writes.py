"""Pure functions from one intent to one transaction.

They read nothing and decide no IDs or times: the caller passes in every value
(including the revision it read, for compare-and-set), so each is trivially testable
and replays the same on any backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from steppe.backend import Compare, Delete, Op, Put
from steppe.state._store import Txn
from steppe.state._tables import (
    ALLOCS,
    EVALS,
    JOB_VERSIONS,
    JOBS,
    NODE_USAGE,
    NODES,
    job_key,
    job_version_key,
)
from steppe.structs import Allocation, Evaluation, Job, Node, PlanResult, to_msgpack


@dataclass(frozen=True)
class Keys:
    """Where each scheduler row lives under the store's root."""

    root: str = "/steppe/"

    def job(self, namespace: str, job_id: str) -> str:
        return self.root + JOBS.prefix + job_key(namespace, job_id)

    def job_version(self, namespace: str, job_id: str, version: int) -> str:
        return self.root + JOB_VERSIONS.prefix + job_version_key(namespace, job_id, version)

    def job_versions(self, namespace: str, job_id: str) -> str:
        return self.root + JOB_VERSIONS.prefix + job_key(namespace, job_id) + "/"

    def node(self, node_id: str) -> str:
        return self.root + NODES.prefix + node_id

    def node_usage(self, node_id: str) -> str:
        return self.root + NODE_USAGE.prefix + node_id

    def alloc(self, alloc_id: str) -> str:
        return self.root + ALLOCS.prefix + alloc_id

    def eval(self, eval_id: str) -> str:
        return self.root + EVALS.prefix + eval_id


def _stored_alloc(alloc: Allocation) -> Allocation:
    """Allocations are stored without their job; they name its version instead."""
    if alloc.job is None:
        return alloc
    return msgspec.structs.replace(alloc, job=None, job_version=alloc.job.version)


def register_job(keys: Keys, job: Job, expected_revision: int, evals: Sequence[Evaluation]) -> Txn:
    """Stores a job version and the evaluation it triggers, if the job is still at
    ``expected_revision`` (0: it must not exist yet)."""
    ops: list[Op] = [
        Put(keys.job(job.namespace, job.id), to_msgpack(job)),
        Put(keys.job_version(job.namespace, job.id, job.version), to_msgpack(job)),
    ]
    ops.extend(Put(keys.eval(e.id), to_msgpack(e)) for e in evals)
    compare = Compare(keys.job(job.namespace, job.id), "mod", "==", expected_revision)
    return Txn((compare,), tuple(ops), f"register job {job.id!r}")


def purge_job(
    keys: Keys, job: Job, evals: Sequence[Evaluation], versions: Sequence[int] | None = None
) -> Txn:
    """``versions``: delete exactly these version rows instead of the job's whole version
    prefix, which also holds the versions of its children (``<job>/periodic-...``)."""
    ops: list[Op] = [Delete(keys.job(job.namespace, job.id))]
    if versions is None:
        ops.append(Delete(keys.job_versions(job.namespace, job.id), prefix=True))
    else:
        ops.extend(Delete(keys.job_version(job.namespace, job.id, v)) for v in versions)
    ops.extend(Put(keys.eval(e.id), to_msgpack(e)) for e in evals)
    compare = Compare(keys.job(job.namespace, job.id), "mod", "==", job.modify_index)
    return Txn((compare,), tuple(ops), f"purge job {job.id!r}")


def upsert_node(keys: Keys, node: Node, evals: Iterable[Evaluation] = ()) -> Txn:
    ops: list[Op] = [Put(keys.node(node.id), to_msgpack(node))]
    ops.extend(Put(keys.eval(e.id), to_msgpack(e)) for e in evals)
    return Txn((), tuple(ops), f"upsert node {node.id}")


def update_node_if(
    keys: Keys, node: Node, expected_revision: int, evals: Iterable[Evaluation] = ()
) -> Txn:
    txn = upsert_node(keys, node, evals)
    compare = Compare(keys.node(node.id), "mod", "==", expected_revision)
    return Txn((compare,), txn.ops, txn.what)


def delete_node(keys: Keys, node_id: str) -> Txn:
    return Txn((), (Delete(keys.node(node_id)), Delete(keys.node_usage(node_id))), "delete node")


def upsert_evals(keys: Keys, evals: Iterable[Evaluation]) -> Txn:
    return Txn((), tuple(Put(keys.eval(e.id), to_msgpack(e)) for e in evals), "upsert evals")


def upsert_allocs(
    keys: Keys,
    allocs: Iterable[Allocation],
    evals: Iterable[Evaluation] = (),
    read_at: dict[str, int] | None = None,
) -> Txn:
    """``read_at``: alloc ID -> the revision its row had when the writer read it; the
    write then fails if any of them changed since (a stop from the plan applier must
    not be overwritten by a status update merged from an older copy)."""
    allocs = list(allocs)
    ops: list[Op] = [Put(keys.alloc(a.id), to_msgpack(_stored_alloc(a))) for a in allocs]
    ops.extend(Put(keys.eval(e.id), to_msgpack(e)) for e in evals)
    compares = tuple(
        Compare(keys.alloc(a.id), "mod", "==", read_at[a.id])
        for a in allocs
        if read_at is not None and a.id in read_at
    )
    return Txn(compares, tuple(ops), "upsert allocations")


def delete_evals_and_allocs(keys: Keys, eval_ids: Iterable[str], alloc_ids: Iterable[str]) -> Txn:
    ops: list[Op] = [Delete(keys.eval(i)) for i in eval_ids]
    ops.extend(Delete(keys.alloc(i)) for i in alloc_ids)
    return Txn((), tuple(ops), "garbage collect")


def apply_plans(
    keys: Keys,
    results: Sequence[PlanResult],
    fence: Compare | None,
    max_ops: int,
    max_bytes: int = 1 << 30,
) -> list[Txn]:
    """The committed parts of one or more plans, checked in order by the one plan
    applier, as few transactions as the limits allow (``max_ops`` operations and about
    ``max_bytes`` each).

    Every transaction carries ``fence``, a compare that holds only while the applier's
    server still leads: the applier checked these plans against everything committed
    before, and nothing else places allocations, so a leader that lost its lease is the
    one writer that could overfill a node, and the fence stops it. A later plan's version
    of an allocation wins. Nodes where allocations stop get their usage key bumped, which
    wakes evaluations blocked for room."""
    per_node: dict[str, dict[str, Allocation]] = {}
    for result in results:
        for group in (result.node_update, result.node_allocation):
            for node_id, allocs in group.items():
                per_node.setdefault(node_id, {}).update((a.id, a) for a in allocs)
    compares = (fence,) if fence is not None else ()
    txns: list[Txn] = []
    ops: list[Op] = []
    rows: list[tuple[str, Allocation]] = []
    size = 0
    for node_id, share in per_node.items():
        node_rows = [(keys.alloc(a.id), _stored_alloc(a)) for a in share.values()]
        node_ops: list[Op] = [Put(key, to_msgpack(row)) for key, row in node_rows]
        if any(a.terminal() for a in share.values()):
            node_ops.append(Put(keys.node_usage(node_id), b"\x00"))
        node_size = sum(len(op.key) + len(op.value) for op in node_ops if isinstance(op, Put))
        if ops and (len(ops) + len(node_ops) > max_ops or size + node_size > max_bytes):
            txns.append(Txn(compares, tuple(ops), "apply plan", tuple(rows)))
            ops, rows, size = [], [], 0
        rows.extend(node_rows)
        ops.extend(node_ops)
        size += node_size
    if ops:
        txns.append(Txn(compares, tuple(ops), "apply plan", tuple(rows)))
    return txns


def with_node_usage_bumps(keys: Keys, txn: Txn, node_ids: Iterable[str]) -> Txn:
    """Adds "resources on these nodes changed" to a write, so blocked evaluations
    waiting for room wake up when allocations stop."""
    bumps = tuple(Put(keys.node_usage(n), b"\x00") for n in sorted(node_ids))
    return Txn(txn.compares, txn.ops + bumps, txn.what, txn.rows)
