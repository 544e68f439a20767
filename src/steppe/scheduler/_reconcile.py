"""What should change for a service or batch job: compare each group's ``count`` with
the allocations that exist, and decide stops, placements and updates. No node is
chosen here; that is :mod:`steppe.scheduler._select`'s job."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec

from steppe.scheduler._reschedule import RESCHEDULE_WINDOW, reschedule_at
from steppe.structs import (
    CLIENT_COMPLETE,
    CLIENT_FAILED,
    CLIENT_LOST,
    DESIRED_RUN,
    NODE_STATUS_DOWN,
    Allocation,
    DesiredUpdates,
    Job,
    Node,
    TaskGroup,
)

NOT_NEEDED = "alloc not needed due to job update"
JOB_STOPPED = "alloc not needed since job was stopped"
UPDATING = "alloc is being updated due to job update"
MIGRATING = "alloc is being migrated"
LOST = "alloc is lost since its node is down"
RESCHEDULED = "alloc was rescheduled because it failed"


@dataclass
class Placement:
    tg: TaskGroup
    name: str
    previous: Allocation | None = None
    stop_previous: str = ""
    """Stop ``previous`` only if this placement succeeds (updates, migrations)."""
    reschedule_delay: int = -1
    """>= 0 when this replaces a failed allocation under the reschedule policy."""

    @property
    def index(self) -> int:
        return alloc_index(self.name)


@dataclass
class Reconciled:
    place: list[Placement] = field(default_factory=list)
    stop: list[tuple[Allocation, str, str]] = field(default_factory=list)
    """(allocation, description, new client status or "")."""
    inplace: list[tuple[Allocation, Allocation]] = field(default_factory=list)
    later: list[tuple[Allocation, int]] = field(default_factory=list)
    """Failed allocations to reschedule at a later time (a follow-up evaluation)."""
    desired: dict[str, DesiredUpdates] = field(default_factory=dict)


def alloc_name(job_id: str, group: str, index: int) -> str:
    return f"{job_id}.{group}[{index}]"


def alloc_index(name: str) -> int:
    _, _, rest = name.rpartition("[")
    rest = rest.rstrip("]")
    return int(rest) if rest.isdigit() else 0


def tasks_updated(old: TaskGroup, new: TaskGroup) -> bool:
    """Whether running allocations must be replaced rather than updated in place:
    anything the running processes see (config, env, resources, ports, templates)."""
    if old.networks != new.networks or len(old.tasks) != len(new.tasks):
        return True
    if old.ephemeral_disk != new.ephemeral_disk:
        return True
    for a, b in zip(old.tasks, new.tasks, strict=True):
        if (a.name, a.driver, a.user, a.config, a.env, a.resources, a.templates, a.meta) != (
            b.name,
            b.driver,
            b.user,
            b.config,
            b.env,
            b.resources,
            b.templates,
            b.meta,
        ):
            return True
    return False


def reconcile(
    job: Job | None,
    allocs: list[Allocation],
    nodes: Mapping[str, Node | None],
    now: int,
    eval_id: str,
    version_of: Callable[[int], Job | None],
) -> Reconciled:
    result = Reconciled()
    stopping = job is None or job.stop
    groups = {} if job is None or stopping else {tg.name: tg for tg in job.task_groups}
    by_group: dict[str, list[Allocation]] = {}
    for alloc in allocs:
        if alloc.desired_status == DESIRED_RUN:
            by_group.setdefault(alloc.task_group, []).append(alloc)
    for name, group_allocs in by_group.items():
        if name not in groups:
            why = JOB_STOPPED if stopping else NOT_NEEDED
            stops = [a for a in group_allocs if not a.client_terminal()]
            result.stop.extend((a, why, "") for a in stops)
            result.desired[name] = DesiredUpdates(stop=len(stops))
    if job is not None and not stopping:
        for tg in job.task_groups:
            _Group(result, job, tg, nodes, now, eval_id, version_of).run(by_group.get(tg.name, []))
    return result


class _Group:
    def __init__(
        self,
        result: Reconciled,
        job: Job,
        tg: TaskGroup,
        nodes: Mapping[str, Node | None],
        now: int,
        eval_id: str,
        version_of: Callable[[int], Job | None],
    ) -> None:
        self.r = result
        self.job = job
        self.tg = tg
        self.nodes = nodes
        self.now = now
        self.eval_id = eval_id
        self.version_of = version_of
        self.batch = job.type == "batch"
        self.keep: list[Allocation] = []
        self.replace: list[Placement] = []
        self.counts = {"place": 0, "stop": 0, "migrate": 0, "in_place_update": 0}
        self.counts["destructive_update"] = 0

    def run(self, allocs: list[Allocation]) -> None:
        for alloc in allocs:
            self._classify(alloc)
        self._trim()
        self._fill()
        self._update()
        changed = self.counts["in_place_update"] + self.counts["destructive_update"]
        ignored = len(self.keep) - changed
        self.r.desired[self.tg.name] = DesiredUpdates(ignore=max(ignored, 0), **self.counts)

    def _classify(self, alloc: Allocation) -> None:
        if alloc.next_allocation:
            return
        if alloc.client_status == CLIENT_COMPLETE:
            if self.batch:
                self.keep.append(alloc)
            return
        if alloc.client_status in (CLIENT_FAILED, CLIENT_LOST):
            self._failed(alloc)
            return
        node = self.nodes.get(alloc.node_id)
        if node is None or node.status == NODE_STATUS_DOWN:
            self.r.stop.append((alloc, LOST, CLIENT_LOST))
            self.counts["stop"] += 1
            self.replace.append(Placement(self.tg, alloc.name, previous=alloc))
        elif node.drain:
            self.counts["migrate"] += 1
            self.replace.append(Placement(self.tg, alloc.name, alloc, stop_previous=MIGRATING))
        else:
            self.keep.append(alloc)

    def _failed(self, alloc: Allocation) -> None:
        policy = self.tg.reschedule_policy
        due = reschedule_at(alloc, policy, self.now)
        if due is None:
            self.keep.append(alloc)
            return
        when, delay = due
        if when <= self.now + RESCHEDULE_WINDOW or alloc.followup_eval_id == self.eval_id:
            self.replace.append(
                Placement(self.tg, alloc.name, alloc, RESCHEDULED, reschedule_delay=delay)
            )
            return
        self.keep.append(alloc)
        if not alloc.followup_eval_id:
            self.r.later.append((alloc, when))

    def _trim(self) -> None:
        excess = len(self.keep) + len(self.replace) - self.tg.count
        if excess <= 0:
            return
        self.replace.sort(key=lambda p: p.index)
        while excess > 0 and self.replace:
            placement = self.replace.pop()
            excess -= 1
            prev = placement.previous
            if prev is not None and placement.stop_previous and not prev.client_terminal():
                self._stop(prev, NOT_NEEDED)
        self.keep.sort(key=lambda a: a.index)
        while excess > 0 and self.keep:
            self._stop(self.keep.pop(), NOT_NEEDED)
            excess -= 1

    def _stop(self, alloc: Allocation, why: str) -> None:
        self.r.stop.append((alloc, why, ""))
        self.counts["stop"] += 1

    def _fill(self) -> None:
        for placement in self.replace:
            self.r.place.append(placement)
            self.counts["place"] += 1
        missing = self.tg.count - len(self.keep) - len(self.replace)
        if missing <= 0:
            return
        taken = {a.index for a in self.keep} | {p.index for p in self.replace}
        index = 0
        while missing > 0:
            if index not in taken:
                name = alloc_name(self.job.id, self.tg.name, index)
                self.r.place.append(Placement(self.tg, name))
                self.counts["place"] += 1
                missing -= 1
            index += 1

    def _update(self) -> None:
        job = self.job
        for alloc in self.keep:
            if alloc.job_version == job.version or alloc.client_terminal():
                continue
            old_job = self.version_of(alloc.job_version)
            old_tg = old_job.group(self.tg.name) if old_job is not None else None
            if old_tg is None or tasks_updated(old_tg, self.tg):
                self.r.place.append(Placement(self.tg, alloc.name, alloc, UPDATING))
                self.counts["destructive_update"] += 1
            else:
                updated = msgspec.structs.replace(
                    alloc, job_version=job.version, modify_time=self.now
                )
                self.r.inplace.append((alloc, updated))
                self.counts["in_place_update"] += 1
