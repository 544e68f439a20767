"""An in-memory scheduler harness, like Nomad's ``scheduler.Harness``:

    h = Harness()
    h.state.upsert_node(mock.node())
    job = h.state.upsert_job(mock.job())
    h.process(mock.eval_for(job))
    assert len(h.plans) == 1

Plans go through the real plan check (:func:`steppe.scheduler.evaluate_plan`) and
what it commits is applied to the harness's state, so a test sees exactly what the
leader would have stored.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from steppe.scheduler import (
    IdFactory,
    SchedulerResult,
    SubmitResult,
    evaluate_plan,
    process,
    seeded_ids,
)
from steppe.structs import (
    NO_LOAD,
    NS,
    Allocation,
    Evaluation,
    Job,
    Node,
    NodeLoad,
    Plan,
    PlanResult,
)

START = 1_700_000_000 * NS


class HarnessState:
    """Implements :class:`steppe.scheduler.State` over plain dicts; mutable, with
    :meth:`snapshot` for tests that need two schedulers reading the same past."""

    def __init__(self) -> None:
        self.index = 1
        self.jobs: dict[tuple[str, str], Job] = {}
        self.versions: dict[tuple[str, str, int], Job] = {}
        self.node_table: dict[str, Node] = {}
        self.allocs: dict[str, Allocation] = {}
        self.by_job: dict[tuple[str, str], dict[str, Allocation]] = {}
        self.by_node: dict[str, dict[str, Allocation]] = {}
        self.loads: dict[str, NodeLoad] = {}
        self.evals: dict[str, Evaluation] = {}

    # State protocol ------------------------------------------------------------------
    def job(self, namespace: str, job_id: str) -> Job | None:
        return self.jobs.get((namespace, job_id))

    def job_version(self, namespace: str, job_id: str, version: int) -> Job | None:
        return self.versions.get((namespace, job_id, version))

    def nodes(self) -> Iterable[Node]:
        return self.node_table.values()

    def node(self, node_id: str) -> Node | None:
        return self.node_table.get(node_id)

    def allocs_by_job(self, namespace: str, job_id: str) -> list[Allocation]:
        return list(self.by_job.get((namespace, job_id), {}).values())

    def allocs_by_node(self, node_id: str) -> list[Allocation]:
        return list(self.by_node.get(node_id, {}).values())

    def node_load(self, node_id: str) -> NodeLoad:
        return self.loads.get(node_id, NO_LOAD)

    def alloc(self, alloc_id: str) -> Allocation | None:
        return self.allocs.get(alloc_id)

    def eval(self, eval_id: str) -> Evaluation | None:
        return self.evals.get(eval_id)

    # writes --------------------------------------------------------------------------
    def _bump(self) -> int:
        self.index += 1
        return self.index

    def upsert_node(self, node: Node) -> Node:
        index = self._bump()
        old = self.node_table.get(node.id)
        node = msgspec.structs.replace(
            node, create_index=old.create_index if old else index, modify_index=index
        )
        self.node_table[node.id] = node
        return node

    def upsert_job(self, job: Job) -> Job:
        """Stores a new version when the job changed, as Nomad's job register does."""
        index = self._bump()
        old = self.jobs.get((job.namespace, job.id))
        version = 0 if old is None else old.version + 1
        job = msgspec.structs.replace(
            job,
            version=version,
            create_index=old.create_index if old else index,
            modify_index=index,
            job_modify_index=index,
        )
        self.jobs[(job.namespace, job.id)] = job
        self.versions[(job.namespace, job.id, version)] = job
        return job

    def delete_job(self, namespace: str, job_id: str) -> None:
        self._bump()
        self.jobs.pop((namespace, job_id), None)

    def upsert_allocs(self, allocs: Iterable[Allocation]) -> None:
        index = self._bump()
        for alloc in allocs:
            old = self.allocs.get(alloc.id)
            alloc = msgspec.structs.replace(
                alloc,
                job=None,
                create_index=old.create_index if old else index,
                modify_index=index,
            )
            if old is not None:
                self.loads[old.node_id] = self.node_load(old.node_id).minus(old)
                if old.node_id != alloc.node_id:
                    self.by_node.get(old.node_id, {}).pop(alloc.id, None)
            self.loads[alloc.node_id] = self.node_load(alloc.node_id).plus(alloc)
            self.allocs[alloc.id] = alloc
            self.by_job.setdefault((alloc.namespace, alloc.job_id), {})[alloc.id] = alloc
            self.by_node.setdefault(alloc.node_id, {})[alloc.id] = alloc

    def upsert_evals(self, evals: Iterable[Evaluation]) -> None:
        index = self._bump()
        for ev in evals:
            old = self.evals.get(ev.id)
            self.evals[ev.id] = msgspec.structs.replace(
                ev, create_index=old.create_index if old else index, modify_index=index
            )

    def apply(self, result: PlanResult) -> None:
        allocs = [a for group in result.node_update.values() for a in group]
        allocs.extend(a for group in result.node_allocation.values() for a in group)
        if allocs:
            self.upsert_allocs(allocs)

    def snapshot(self) -> HarnessState:
        snap = HarnessState()
        snap.index = self.index
        snap.jobs = dict(self.jobs)
        snap.versions = dict(self.versions)
        snap.node_table = dict(self.node_table)
        snap.allocs = dict(self.allocs)
        snap.by_job = {k: dict(v) for k, v in self.by_job.items()}
        snap.by_node = {k: dict(v) for k, v in self.by_node.items()}
        snap.loads = dict(self.loads)
        snap.evals = dict(self.evals)
        return snap


class Harness:
    """Runs evaluations through the real scheduler and plan check; records plans."""

    def __init__(
        self, state: HarnessState | None = None, now: int = START, ids: IdFactory | None = None
    ) -> None:
        self.state = state if state is not None else HarnessState()
        self.now = now
        self.ids = ids if ids is not None else seeded_ids("harness")
        self.plans: list[Plan] = []
        self.results: list[PlanResult] = []
        self.evals: list[Evaluation] = []
        """Processed evaluations as they ended (Nomad's ``h.Evals``)."""
        self.created_evals: list[Evaluation] = []

    def submit(self, plan: Plan) -> SubmitResult:
        self.plans.append(plan)
        result = evaluate_plan(self.state, plan)
        self.state.apply(result)
        self.results.append(result)
        return result, (self.state if result.refresh_index else None)

    def process(self, ev: Evaluation, now: int | None = None) -> SchedulerResult:
        self.state.upsert_evals([ev])
        result = process(self.state, ev, self.now if now is None else now, self.submit, self.ids)
        self.evals.append(result.eval)
        self.created_evals.extend(result.new_evals)
        self.state.upsert_evals([result.eval, *result.new_evals])
        return result

    def running(self, job: Job) -> list[Allocation]:
        """The job's allocations that are meant to run."""
        return [a for a in self.state.allocs_by_job(job.namespace, job.id) if not a.terminal()]
