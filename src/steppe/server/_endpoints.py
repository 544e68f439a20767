"""What any server does for a request: turn an intent into evaluations and a write.

These run on whichever server received the request (writes go to the shared backend,
so no forwarding is needed for them); only the leader's loops (broker, plan applier,
heartbeat timers) run in one place.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from steppe.errors import ConflictError, NotFoundError, ValidationError
from steppe.state import Keys, StateSnapshot, StateStore, writes
from steppe.structs import (
    CLIENT_FAILED,
    EVAL_PENDING,
    NODE_STATUS_DOWN,
    NODE_STATUS_READY,
    TRIGGER_ALLOC_FAILURE,
    TRIGGER_JOB_DEREGISTER,
    TRIGGER_JOB_REGISTER,
    TRIGGER_NODE_UPDATE,
    Allocation,
    Evaluation,
    Job,
    Node,
)

CAS_RETRIES = 5
_VOLATILE_JOB_FIELDS = {
    "status": "",
    "status_description": "",
    "stable": False,
    "version": 0,
    "submit_time": 0,
    "create_index": 0,
    "modify_index": 0,
    "job_modify_index": 0,
}


def spec_changed(old: Job | None, new: Job) -> bool:
    """Whether ``new`` differs from ``old`` in anything the user wrote."""
    if old is None:
        return True
    return msgspec.structs.replace(old, **_VOLATILE_JOB_FIELDS) != msgspec.structs.replace(
        new, **_VOLATILE_JOB_FIELDS
    )


@dataclass(frozen=True)
class RegisterResult:
    eval_id: str
    eval_create_index: int
    job_modify_index: int
    warnings: str = ""


class Endpoints:
    def __init__(
        self,
        store: StateStore,
        region: str,
        clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.store = store
        self.keys = Keys(store.root)
        self.region = region
        self._clock = clock
        self._new_id = id_factory

    def _now_ns(self) -> int:
        return int(self._clock() * 1e9)

    def new_eval(self, job: Job, triggered_by: str, **fields: object) -> Evaluation:
        now = self._now_ns()
        return Evaluation(
            id=self._new_id(),
            namespace=job.namespace,
            priority=job.priority,
            type=job.type,
            triggered_by=triggered_by,
            job_id=job.id,
            status=EVAL_PENDING,
            create_time=now,
            modify_time=now,
            **fields,  # type: ignore[arg-type]
        )

    # jobs ----------------------------------------------------------------------------
    async def register_job(self, job: Job) -> RegisterResult:
        if job.region not in ("", "global", self.region):
            raise ValidationError(f"job region {job.region!r} is not this server's {self.region!r}")
        for _ in range(CAS_RETRIES):
            snap = self.store.snapshot()
            existing = snap.job(job.namespace, job.id)
            version = 0
            if existing is not None:
                version = existing.version + (1 if spec_changed(existing, job) else 0)
            stored = msgspec.structs.replace(
                job, version=version, submit_time=self._now_ns(), status="pending"
            )
            # periodic and parameterized jobs are templates: only their children run
            evals = [] if stored.is_parent() else [self.new_eval(stored, TRIGGER_JOB_REGISTER)]
            txn = writes.register_job(
                self.keys, stored, existing.modify_index if existing else 0, evals
            )
            revision = await self.store.try_commit(txn)
            if revision is not None:
                return RegisterResult(evals[0].id if evals else "", revision, revision)
        raise ConflictError(f"job {job.id!r} kept changing concurrently; try again")

    async def deregister_job(self, namespace: str, job_id: str, purge: bool) -> RegisterResult:
        for _ in range(CAS_RETRIES):
            snap = self.store.snapshot()
            job = snap.job(namespace, job_id)
            if job is None:
                raise NotFoundError(f"job not found: {job_id}")
            ev = self.new_eval(job, TRIGGER_JOB_DEREGISTER)
            if purge:
                versions = None
                if job.is_parent():
                    versions = [v.version for v in snap.job_versions(namespace, job_id)]
                txn = writes.purge_job(self.keys, job, [ev], versions)
            else:
                stopped = msgspec.structs.replace(
                    job,
                    stop=True,
                    version=job.version + (0 if job.stop else 1),
                    submit_time=self._now_ns(),
                )
                txn = writes.register_job(self.keys, stopped, job.modify_index, [ev])
            revision = await self.store.try_commit(txn)
            if revision is not None:
                return RegisterResult(ev.id, revision, revision)
        raise ConflictError(f"job {job_id!r} kept changing concurrently; try again")

    # nodes ---------------------------------------------------------------------------
    async def register_node(self, node: Node) -> Node:
        """Stores the node as ready; system jobs and blocked evals get a look at it."""
        snap = self.store.snapshot()
        old = snap.node(node.id)
        stored = msgspec.structs.replace(
            node,
            status=NODE_STATUS_READY,
            status_updated_at=int(self._clock()),
            create_index=0,
            modify_index=0,
        )
        evals = []
        if old is None or old.status != NODE_STATUS_READY or _placement_relevant(old, stored):
            evals = self._node_evals(snap, stored)
        await self.store.commit(writes.upsert_node(self.keys, stored, evals))
        return stored

    def _node_evals(self, snap: StateSnapshot, node: Node) -> list[Evaluation]:
        """Evals for every job that may need to move work because of this node:
        system jobs (one alloc per node) and jobs with allocations on it."""
        jobs: dict[tuple[str, str], Job] = {}
        for job in snap.jobs():
            if job.type in ("system", "sysbatch") and not job.stop and not job.is_parent():
                jobs[(job.namespace, job.id)] = job
        for alloc in snap.allocs_by_node(node.id):
            owner = snap.job(alloc.namespace, alloc.job_id)
            if owner is not None and not alloc.terminal():
                jobs[(owner.namespace, owner.id)] = owner
        return [
            self.new_eval(j, TRIGGER_NODE_UPDATE, node_id=node.id, node_modify_index=0)
            for j in jobs.values()
        ]

    async def mark_node_down(self, node_id: str, reason: str) -> bool:
        """Declares a node down; its allocations become lost and are replaced."""
        for _ in range(CAS_RETRIES):
            snap = self.store.snapshot()
            node = snap.node(node_id)
            if node is None or node.status == NODE_STATUS_DOWN:
                return False
            down = msgspec.structs.replace(
                node,
                status=NODE_STATUS_DOWN,
                status_description=reason,
                status_updated_at=int(self._clock()),
            )
            txn = writes.update_node_if(
                self.keys, down, snap.revision_of("nodes", node_id), self._node_evals(snap, down)
            )
            if await self.store.try_commit(txn) is not None:
                return True
        return False

    async def update_node_eligibility(self, node_id: str, eligible: bool) -> None:
        snap = self.store.snapshot()
        node = snap.node(node_id)
        if node is None:
            raise NotFoundError(f"node not found: {node_id}")
        changed = msgspec.structs.replace(
            node, scheduling_eligibility="eligible" if eligible else "ineligible"
        )
        await self.store.commit(
            writes.upsert_node(self.keys, changed, self._node_evals(snap, changed))
        )

    # allocations ---------------------------------------------------------------------
    async def update_allocs_from_client(self, updates: list[Allocation]) -> None:
        """Merges what a client reports (its status and task states) into the stored
        allocations; failed ones trigger an evaluation so they can be rescheduled.

        Each merged row is written only if it is still the row merged into: otherwise a
        stop the plan applier wrote meanwhile would be overwritten with "run", and the
        allocation would keep running past its group's count. Refused rows are merged
        again into the current state."""
        pending = list(updates)
        snap = self.store.snapshot()
        for _ in range(CAS_RETRIES):
            pending = await self._merge_client_updates(snap, pending)
            if not pending:
                return
            snap = await self.store.consistent_snapshot()
        raise ConflictError("allocations kept changing under a client update; try again")

    async def _merge_client_updates(
        self, snap: StateSnapshot, updates: list[Allocation]
    ) -> list[Allocation]:
        """Commits what merges; returns the updates whose rows changed under them."""
        merged: list[tuple[Allocation, Allocation]] = []
        evals: dict[tuple[str, str], Evaluation] = {}
        now = self._now_ns()
        for update in updates:
            stored = snap.alloc(update.id)
            if stored is None:
                continue
            new = msgspec.structs.replace(
                stored,
                client_status=update.client_status,
                client_description=update.client_description,
                task_states=update.task_states,
                modify_time=now,
            )
            if new == stored:
                continue
            merged.append((update, new))
            if update.client_status == CLIENT_FAILED and stored.client_status != CLIENT_FAILED:
                job = snap.job(stored.namespace, stored.job_id)
                if job is not None and (job.namespace, job.id) not in evals:
                    evals[(job.namespace, job.id)] = self.new_eval(job, TRIGGER_ALLOC_FAILURE)
        refused: list[Allocation] = []
        batch = max(1, (self.store.backend.max_txn_ops - len(evals)) // 2 - 1)
        for i in range(0, len(merged), batch):
            chunk = [new for _, new in merged[i : i + batch]]
            read_at = {a.id: snap.revision_of("allocs", a.id) for a in chunk}
            chunk_evals = list(evals.values()) if i == 0 else []
            txn = writes.upsert_allocs(self.keys, chunk, chunk_evals, read_at)
            usage = {a.node_id for a in chunk if a.client_terminal()}
            if usage:
                txn = writes.with_node_usage_bumps(self.keys, txn, usage)
            if await self.store.try_commit(txn) is None:
                refused.extend(update for update, _ in merged[i : i + batch])
        return refused


def _placement_relevant(old: Node, new: Node) -> bool:
    return (
        old.attributes != new.attributes
        or old.drivers != new.drivers
        or old.resources != new.resources
        or old.datacenter != new.datacenter
        or old.meta != new.meta
        or old.node_class != new.node_class
    )
