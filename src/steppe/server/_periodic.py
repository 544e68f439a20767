"""Periodic jobs: the leader launches a child job at each time the parent's cron fires.

A child is a copy of its parent with ``ParentID`` set, the ID
``<parent>/periodic-<launch unix time>`` and no periodic block, registered like any job
so it gets an evaluation. The ID comes from the launch time and the write only creates
(compare on "absent"), so a launch is idempotent: a second leader, or the same one after
a restart, launching the same time writes nothing.

Which times are due is derived from state, not remembered: the newest launched child
(or the parent's submit time, when it was changed since) is where the schedule resumes,
so a launch missed while no leader ran happens once, as soon as a leader is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from steppe.cron import CronError, next_launch_any
from steppe.errors import ConflictError, NotFoundError, ValidationError
from steppe.server._endpoints import Endpoints, RegisterResult
from steppe.state import StateSnapshot, StateStore, writes
from steppe.structs import Job

log = logging.getLogger(__name__)
PERIODIC_INFIX = "/periodic-"
TRIGGER_PERIODIC = "periodic-job"
MAX_WAIT = 60.0
"""Seconds between looks at the schedule when nothing changes; launches wake it sooner."""


def periodic_child_id(parent_id: str, launch_unix: int) -> str:
    return f"{parent_id}{PERIODIC_INFIX}{launch_unix}"


def launch_time_of(parent_id: str, child_id: str) -> int | None:
    """The launch time encoded in a periodic child's ID; None for other IDs."""
    prefix = parent_id + PERIODIC_INFIX
    rest = child_id[len(prefix) :] if child_id.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def children(snap: StateSnapshot, parent: Job) -> list[Job]:
    return [j for j in snap.jobs(parent.namespace) if j.parent_id == parent.id]


def child_active(snap: StateSnapshot, child: Job) -> bool:
    """Whether a child still has work running or waiting to be scheduled."""
    allocs = snap.allocs_by_job(child.namespace, child.id)
    if any(not a.terminal() for a in allocs):
        return True
    if child.stop:
        return False
    return any(not e.terminal() for e in snap.evals_by_job(child.namespace, child.id))


def derive_child(parent: Job, child_id: str, **fields: object) -> Job:
    """A child job as Nomad derives it: the parent's spec under a new ID and name."""
    return msgspec.structs.replace(
        parent,
        id=child_id,
        name=child_id,
        parent_id=parent.id,
        status="pending",
        status_description="",
        stop=False,
        stable=False,
        version=0,
        create_index=0,
        modify_index=0,
        job_modify_index=0,
        **fields,
    )


async def register_child(
    endpoints: Endpoints, child: Job, trigger: str, now_ns: int
) -> RegisterResult | None:
    """Creates ``child`` with its evaluation; None if a job of that ID already exists."""
    stored = msgspec.structs.replace(child, submit_time=now_ns)
    evals = [] if stored.is_parent() else [endpoints.new_eval(stored, trigger)]
    txn = writes.register_job(endpoints.keys, stored, 0, evals)
    revision = await endpoints.store.try_commit(txn)
    if revision is None:
        return None
    return RegisterResult(evals[0].id if evals else "", revision, revision)


async def force_launch(
    endpoints: Endpoints, namespace: str, job_id: str, now: float
) -> RegisterResult:
    """``job periodic force``: a child launched now, whatever the schedule and overlap."""
    parent = endpoints.store.snapshot().job(namespace, job_id)
    if parent is None:
        raise NotFoundError(f"job not found: {job_id}")
    if parent.periodic is None or parent.is_parameterized():
        raise ValidationError(f"job {job_id!r} is not a periodic job: nothing to force")
    if parent.stop:
        raise ValidationError(f"job {job_id!r} is stopped")
    child = derive_child(parent, periodic_child_id(parent.id, int(now)), periodic=None)
    result = await register_child(endpoints, child, TRIGGER_PERIODIC, int(now * 1e9))
    if result is None:
        raise ConflictError(f"job {child.id!r} was already launched this second; try again")
    return result


@dataclass(frozen=True)
class _Tracked:
    job_modify_index: int
    due: datetime | None


class PeriodicDispatcher:
    """The leader's launcher of periodic children. :meth:`tick` does one pass at a given
    time (tests drive it directly); :meth:`start` runs passes whenever a launch is due or
    the jobs table changes."""

    def __init__(
        self, store: StateStore, endpoints: Endpoints, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self._clock = clock
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._tracked.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._tracked.clear()

    def next_due(self) -> float | None:
        """The earliest launch time (unix seconds) among tracked jobs."""
        times = [t.due.timestamp() for t in self._tracked.values() if t.due is not None]
        return min(times, default=None)

    def wake(self) -> None:
        """Makes the loop look at the schedule now (a test's clock has moved)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            seen = self.store.snapshot().table_index("jobs")
            wait = MAX_WAIT
            try:
                await self.tick(self._clock())
                due = self.next_due()
                if due is not None:
                    wait = min(MAX_WAIT, max(0.0, due - self._clock()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic dispatch failed; retrying in a second")
                wait = 1.0
            await self._sleep(seen, wait)

    async def _sleep(self, seen: int, wait: float) -> None:
        """Until a launch is due, the jobs table changes, or :meth:`wake` is called."""
        changed = asyncio.ensure_future(self.store.block(["jobs"], seen, timeout=wait))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((changed, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            woken.cancel()
            self._wake.clear()

    async def tick(self, now: float) -> list[str]:
        """Launches every child due at ``now``; returns the IDs of the children created."""
        snap = self.store.snapshot()
        at = datetime.fromtimestamp(now, UTC)
        launched: list[str] = []
        active: set[tuple[str, str]] = set()
        for job in snap.jobs():
            if not job.is_periodic_active():
                continue
            key = (job.namespace, job.id)
            active.add(key)
            tracked = self._tracked.get(key)
            if tracked is None or tracked.job_modify_index != job.job_modify_index:
                tracked = _Tracked(job.job_modify_index, self._resume_from(snap, job, at))
            if tracked.due is not None and tracked.due <= at:
                child_id = await self._launch(snap, job, int(tracked.due.timestamp()), now)
                if child_id is not None:
                    launched.append(child_id)
                tracked = _Tracked(tracked.job_modify_index, self._next(job, at))
            self._tracked[key] = tracked
        for key in set(self._tracked) - active:
            del self._tracked[key]
        return launched

    def _resume_from(self, snap: StateSnapshot, job: Job, now: datetime) -> datetime | None:
        """The first launch after the newest launched child, or after the job's current
        version was submitted: missed launches since then get one catch-up launch."""
        times = [launch_time_of(job.id, c.id) for c in children(snap, job)]
        last = max((t for t in times if t is not None), default=None)
        submitted = job.submit_time / 1e9 if job.submit_time else now.timestamp()
        base = submitted if last is None else max(last, submitted)
        return self._next(job, datetime.fromtimestamp(base, UTC))

    def _next(self, job: Job, after: datetime) -> datetime | None:
        assert job.periodic is not None
        try:
            return next_launch_any(job.periodic.all_specs(), after, job.periodic.time_zone)
        except CronError as exc:
            log.warning("periodic job %s: %s; not launching it", job.id, exc)
            return None

    async def _launch(
        self, snap: StateSnapshot, job: Job, launch_unix: int, now: float
    ) -> str | None:
        assert job.periodic is not None
        if job.periodic.prohibit_overlap:
            busy = [c.id for c in children(snap, job) if child_active(snap, c)]
            if busy:
                log.info("periodic job %s: skipping a launch, %s still running", job.id, busy[0])
                return None
        child = derive_child(job, periodic_child_id(job.id, launch_unix), periodic=None)
        result = await register_child(self.endpoints, child, TRIGGER_PERIODIC, int(now * 1e9))
        if result is None:
            return None
        log.info("periodic job %s: launched %s", job.id, child.id)
        return child.id
