"""The system scheduler: one allocation of each group on every eligible node."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from steppe.scheduler._build import allocated_resources, new_alloc
from steppe.scheduler._context import Pass, PlanBuilder
from steppe.scheduler._nodes import ready_nodes
from steppe.scheduler._outcome import finish_eval, stopped
from steppe.scheduler._protocols import SchedulerResult, State
from steppe.scheduler._reconcile import (
    JOB_STOPPED,
    LOST,
    NOT_NEEDED,
    RESCHEDULED,
    UPDATING,
    alloc_name,
    tasks_updated,
)
from steppe.scheduler._select import GroupAsk
from steppe.structs import (
    CLIENT_COMPLETE,
    CLIENT_LOST,
    NODE_STATUS_DOWN,
    Allocation,
    AllocMetric,
    DesiredUpdates,
    Evaluation,
    Job,
    Node,
    PlanAnnotations,
    TaskGroup,
)


def schedule_system(
    state: State, ev: Evaluation, now: int, ids: Callable[[], str]
) -> SchedulerResult:
    job = state.job(ev.namespace, ev.job_id)
    allocs = [a for a in state.allocs_by_job(ev.namespace, ev.job_id) if not a.terminal()]
    plan = PlanBuilder(ev.id, job.priority if job else ev.priority, job, state.index)
    pass_ = Pass(state, plan, now, random.Random(ev.id), ids)
    failed: dict[str, AllocMetric] = {}
    queued: dict[str, int] = {}
    desired: dict[str, DesiredUpdates] = {}
    groups = {tg.name: tg for tg in job.task_groups} if job and not job.stop else {}
    for alloc in allocs:
        if alloc.task_group not in groups:
            pass_.stop(stopped(alloc, JOB_STOPPED if not groups else NOT_NEEDED, "", now))
    if job is not None and groups:
        nodes = ready_nodes(state.nodes(), job).nodes
        for tg in job.task_groups:
            group_allocs = [a for a in allocs if a.task_group == tg.name]
            system = _SystemGroup(pass_, job, tg, nodes, failed, queued)
            desired[tg.name] = system.run(group_allocs)
    done, _ = finish_eval(ev, now, state.index, failed, queued, ids, block=False)
    annotations = PlanAnnotations(desired_tg_updates=desired)
    return SchedulerResult(eval=done, plan=None if plan.empty() else plan.build(annotations))


class _SystemGroup:
    def __init__(
        self,
        pass_: Pass,
        job: Job,
        tg: TaskGroup,
        nodes: list[Node],
        failed: dict[str, AllocMetric],
        queued: dict[str, int],
    ) -> None:
        self.pass_ = pass_
        self.job = job
        self.tg = tg
        self.nodes = {n.id: n for n in nodes}
        self.ask = GroupAsk(job, tg, None, [])
        self.failed = failed
        self.queued = queued
        queued[tg.name] = 0
        self.counts = DesiredUpdates()

    def _count(self, field: str) -> None:
        value = getattr(self.counts, field) + 1
        self.counts = msgspec.structs.replace(self.counts, **{field: value})

    def run(self, allocs: list[Allocation]) -> DesiredUpdates:
        pass_ = self.pass_
        covered: set[str] = set()
        for alloc in sorted(allocs, key=lambda a: a.create_time):
            node = pass_.state.node(alloc.node_id)
            if node is None or node.status == NODE_STATUS_DOWN:
                pass_.stop(stopped(alloc, LOST, CLIENT_LOST, pass_.now))
                self._count("stop")
            elif alloc.node_id in covered or not self._feasible(node):
                pass_.stop(stopped(alloc, NOT_NEEDED, "", pass_.now))
                self._count("stop")
            else:
                covered.add(alloc.node_id)
                self._keep(alloc, node)
        for node in self.nodes.values():
            if node.id not in covered and self._feasible(node):
                self._place(node)
        return self.counts

    def _feasible(self, node: Node) -> bool:
        return node.id in self.nodes and not self.ask.feasibility.reason(node)

    def _keep(self, alloc: Allocation, node: Node) -> None:
        if alloc.client_status == CLIENT_COMPLETE:
            self._count("ignore")
        elif alloc.client_terminal():
            self._place(node, alloc, RESCHEDULED)
        elif alloc.job_version == self.job.version:
            self._count("ignore")
        else:
            old = self.pass_.state.job_version(self.job.namespace, self.job.id, alloc.job_version)
            old_tg = old.group(self.tg.name) if old is not None else None
            if old_tg is None or tasks_updated(old_tg, self.tg):
                self._place(node, alloc, UPDATING)
                self._count("destructive_update")
            else:
                new = msgspec.structs.replace(
                    alloc, job_version=self.job.version, modify_time=self.pass_.now
                )
                self.pass_.place(new, replacing=alloc)
                self._count("in_place_update")

    def _place(self, node: Node, prev: Allocation | None = None, why: str = "") -> None:
        pass_, tg = self.pass_, self.tg
        if prev is not None:
            pass_.stop(stopped(prev, why, "", pass_.now))
        usage = pass_.usage(node)
        dim = self.ask.exhausted(usage)
        resources = None if dim else allocated_resources(pass_, tg, usage)
        metric = AllocMetric(
            nodes_evaluated=1,
            nodes_in_pool=len(self.nodes),
            nodes_available={node.datacenter: 1},
            nodes_exhausted=1 if dim else 0,
            dimension_exhausted={dim: 1} if dim else {},
        )
        if resources is None:
            if prev is not None:
                pass_.unstop(prev.id)
            self._fail(metric)
            return
        name = prev.name if prev is not None else alloc_name(self.job.id, tg.name, 0)
        _, parts = self.ask.score(usage, frozenset())
        metric = msgspec.structs.replace(metric, scores=parts)
        pass_.place(new_alloc(pass_, self.job, tg, name, usage, resources, metric, prev))
        self._count("place")

    def _fail(self, metric: AllocMetric) -> None:
        name = self.tg.name
        self.queued[name] += 1
        before = self.failed.get(name)
        if before is None:
            self.failed[name] = metric
            return
        merged_dims = dict(before.dimension_exhausted)
        for dim, n in metric.dimension_exhausted.items():
            merged_dims[dim] = merged_dims.get(dim, 0) + n
        self.failed[name] = msgspec.structs.replace(
            before,
            nodes_evaluated=before.nodes_evaluated + 1,
            nodes_exhausted=before.nodes_exhausted + metric.nodes_exhausted,
            dimension_exhausted=merged_dims,
            coalesced_failures=before.coalesced_failures + 1,
        )
