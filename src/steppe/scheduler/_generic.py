"""The service and batch scheduler: reconcile, then place what is missing."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from steppe.scheduler._build import allocated_resources, new_alloc
from steppe.scheduler._context import Pass, PlanBuilder
from steppe.scheduler._nodes import ready_nodes
from steppe.scheduler._outcome import finish_eval, followup_evals, stopped
from steppe.scheduler._protocols import SchedulerResult, State
from steppe.scheduler._reconcile import Placement, Reconciled, reconcile
from steppe.scheduler._select import DATACENTER, GroupAsk, Stack, effective_spreads
from steppe.structs import (
    AllocMetric,
    Evaluation,
    Job,
    PlanAnnotations,
    RescheduleEvent,
    RescheduleTracker,
)


def schedule_generic(
    state: State, ev: Evaluation, now: int, ids: Callable[[], str]
) -> SchedulerResult:
    job = state.job(ev.namespace, ev.job_id)
    allocs = state.allocs_by_job(ev.namespace, ev.job_id)
    nodes = {a.node_id: state.node(a.node_id) for a in allocs}

    def version_of(version: int) -> Job | None:
        if job is not None and version == job.version:
            return job
        return state.job_version(ev.namespace, ev.job_id, version)

    rec = reconcile(job, allocs, nodes, now, ev.id, version_of)
    plan = PlanBuilder(ev.id, job.priority if job else ev.priority, job, state.index)
    pass_ = Pass(state, plan, now, random.Random(ev.id), ids)
    for alloc, why, client_status in rec.stop:
        pass_.stop(stopped(alloc, why, client_status, now))
    for old, new in rec.inplace:
        pass_.place(new, replacing=old)
    new_evals, waits = followup_evals(ev, rec.later, now, ids)
    for alloc, _ in rec.later:
        pass_.place(msgspec.structs.replace(alloc, followup_eval_id=waits[alloc.id]), alloc)
    failed: dict[str, AllocMetric] = {}
    queued: dict[str, int] = {tg.name: 0 for tg in job.task_groups} if job else {}
    if job is not None and rec.place:
        _Placer(pass_, job, rec, failed, queued).run()
    done, blocked = finish_eval(ev, now, state.index, failed, queued, ids)
    annotations = PlanAnnotations(desired_tg_updates=rec.desired)
    result_plan = None if plan.empty() else plan.build(annotations)
    return SchedulerResult(eval=done, plan=result_plan, new_evals=new_evals + blocked)


class _Placer:
    def __init__(
        self,
        pass_: Pass,
        job: Job,
        rec: Reconciled,
        failed: dict[str, AllocMetric],
        queued: dict[str, int],
    ) -> None:
        self.pass_ = pass_
        self.job = job
        self.rec = rec
        self.failed = failed
        self.queued = queued
        self.asks: dict[str, GroupAsk] = {}
        ready = ready_nodes(pass_.state.nodes(), job)
        by_dc = all(
            s.attribute == DATACENTER for tg in job.task_groups for s in effective_spreads(job, tg)
        ) and any(effective_spreads(job, tg) for tg in job.task_groups)
        self.ready = ready
        self.stack = Stack(pass_, ready, job.type == "batch", by_dc)

    def _ask(self, placement: Placement) -> GroupAsk:
        name = placement.tg.name
        ask = self.asks.get(name)
        if ask is None:
            state, stopping = self.pass_.state, self.pass_.plan.stopped
            held = [
                a.node_id
                for a in state.allocs_by_job(self.job.namespace, self.job.id)
                if a.task_group == name and not a.terminal() and a.id not in stopping
            ]
            held_nodes = [n for n in (state.node(i) for i in held) if n is not None]
            ask = self.asks[name] = GroupAsk(self.job, placement.tg, self.ready, held_nodes)
        return ask

    def run(self) -> None:
        for placement in self.rec.place:
            name = placement.tg.name
            if name in self.failed:
                metric = self.failed[name]
                self.failed[name] = msgspec.structs.replace(
                    metric, coalesced_failures=metric.coalesced_failures + 1
                )
                self.queued[name] += 1
                continue
            self._place(placement)

    def _place(self, placement: Placement) -> None:
        pass_, tg, prev = self.pass_, placement.tg, placement.previous
        ask = self._ask(placement)
        if prev is not None and placement.stop_previous:
            pass_.stop(stopped(prev, placement.stop_previous, "", pass_.now))
        penalty = frozenset((prev.node_id,)) if placement.reschedule_delay >= 0 and prev else None
        best, metric = self.stack.select(ask, penalty or frozenset())
        usage = pass_.usage(best.node) if best is not None else None
        resources = allocated_resources(pass_, tg, usage) if usage is not None else None
        if usage is None or resources is None:
            if prev is not None and placement.stop_previous:
                pass_.unstop(prev.id)
            self.failed[tg.name] = metric
            self.queued[tg.name] += 1
            return
        tracker = None
        if prev is not None and placement.reschedule_delay >= 0:
            event = RescheduleEvent(
                reschedule_time=pass_.now,
                prev_alloc_id=prev.id,
                prev_node_id=prev.node_id,
                delay=placement.reschedule_delay,
            )
            before = prev.reschedule_tracker.events if prev.reschedule_tracker else ()
            tracker = RescheduleTracker(events=(*before, event))
        alloc = new_alloc(
            pass_, self.job, tg, placement.name, usage, resources, metric, prev, tracker
        )
        pass_.place(alloc)
        ask.record(usage.node)
