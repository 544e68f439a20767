"""The leader's plan applier: re-checks each plan against the newest state and commits
what still fits.

Only it decides what commits, so it checks plans one at a time; but committing (a
quorum write, then the watch bringing it back into the cache) is its slow part, and it
does not wait for that. It checks the next plans while earlier commits are in flight,
against the state plus every result not yet in it, like Nomad's pipelined applier; and
plans that queued up meanwhile are checked one after another and committed together,
as etcd's own group commit does for its log. A plan's answer is what it would have been
alone, since everything in flight counts as placed: if an earlier commit fails, a later
plan was only checked against fuller nodes than there are.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec

from steppe._tasks import cancel_all
from steppe.backend import Compare
from steppe.errors import NotLeaderError
from steppe.scheduler import evaluate_plan
from steppe.state import Keys, StateSnapshot, StateStore, writes
from steppe.structs import Allocation, Node, NodeLoad, Plan, PlanResult

Answer = tuple[PlanResult, StateSnapshot | None]
Batch = list[tuple[Plan, asyncio.Future[Answer]]]
COMMITS_IN_FLIGHT = 3


class PlanApplier:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.keys = Keys(store.root)
        self._queue: deque[tuple[Plan, asyncio.Future[Answer]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self.fence: Compare | None = None
        """Carried by every commit (see ``writes.apply_plans``); the leader sets it."""

    async def apply(self, plan: Plan) -> Answer:
        """What of ``plan`` committed, and a newer snapshot to plan again on if not all
        of it did."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        self._queue.append((plan, answer))
        self._arrived.set()
        if self._drainer is None or self._drainer.done():
            # a task of its own, so a cancelled submitter never strands the others
            self._drainer = loop.create_task(self._drain())
        return await answer

    async def stop(self) -> None:
        """Fails every plan still waiting: a leader that steps down commits nothing more."""
        if self._drainer is not None:
            await cancel_all([self._drainer])
            self._drainer = None
        while self._queue:
            _, answer = self._queue.popleft()
            if not answer.done():
                answer.set_exception(NotLeaderError(None))

    async def _drain(self) -> None:
        in_flight: dict[asyncio.Task[None], list[PlanResult]] = {}
        try:
            while self._queue or in_flight:
                if self._queue and len(in_flight) < COMMITS_IN_FLIGHT:
                    batch = self._next_batch()
                    if batch:
                        ahead = [r for results in in_flight.values() for r in results]
                        results = self._check([plan for plan, _ in batch], ahead)
                        commit = asyncio.ensure_future(self._commit_and_answer(batch, results))
                        in_flight[commit] = results
                    continue
                self._arrived.clear()
                waiters: set[asyncio.Future[Any]] = set(in_flight)
                if len(in_flight) < COMMITS_IN_FLIGHT:
                    waiters.add(asyncio.ensure_future(self._arrived.wait()))
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    if waiter not in in_flight:
                        waiter.cancel()
                for commit in [c for c in in_flight if c.done()]:
                    del in_flight[commit]
        except BaseException:
            await cancel_all(in_flight)
            raise

    def _next_batch(self) -> Batch:
        """Queued plans, in order, up to about one transaction's worth of operations."""
        budget = self.store.backend.max_txn_ops
        batch: Batch = []
        while self._queue:
            plan, answer = self._queue[0]
            if answer.done():  # its submitter gave up waiting
                self._queue.popleft()
                continue
            ops = _ops_of(plan)
            if batch and ops > budget:
                break
            batch.append(self._queue.popleft())
            budget -= ops
        return batch

    def _check(self, plans: Sequence[Plan], ahead: Sequence[PlanResult]) -> list[PlanResult]:
        """Each plan's part that fits, on the state plus the results ``ahead`` (still
        committing) and those of the plans before it."""
        pending = PendingState(self.store.snapshot())
        for result in ahead:
            pending.add(result)
        results: list[PlanResult] = []
        for plan in plans:
            result = evaluate_plan(pending, plan)
            pending.add(result)
            results.append(result)
        return results

    async def _commit_and_answer(self, batch: Batch, results: list[PlanResult]) -> None:
        try:
            revision = await self._commit(results)
        except BaseException as exc:
            # cancelled: this server stepped down, and the submitters must hear so
            failure = exc if isinstance(exc, Exception) else NotLeaderError(None)
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (plan, answer), result in zip(batch, results, strict=True):
            if answer.done():
                continue
            if result.fully_committed(plan):
                answer.set_result((msgspec.structs.replace(result, alloc_index=revision), None))
                continue
            # the worker plans the rest again on state that holds what did commit
            refresh = max(result.refresh_index, revision)
            result = msgspec.structs.replace(result, refresh_index=refresh, alloc_index=revision)
            answer.set_result((result, self.store.snapshot()))

    async def _commit(self, results: list[PlanResult]) -> int:
        """Commits every result; the revision of the last write (the cache reflects it)."""
        backend = self.store.backend
        limits = (backend.max_txn_ops, backend.max_txn_bytes)
        revision = self.store.revision
        for txn in writes.apply_plans(self.keys, results, self.fence, *limits):
            committed = await self.store.try_commit(txn)
            if committed is None:
                raise NotLeaderError(None)
            revision = committed
        return revision


class PendingState:
    """A snapshot plus plan results checked but not yet committed, as the plan check
    reads it: the next plan of a batch must see the allocations the earlier ones placed
    and stopped, or two plans could each fill the same node."""

    def __init__(self, snap: StateSnapshot) -> None:
        self._snap = snap
        self._allocs: dict[str, Allocation] = {}
        self._loads: dict[str, NodeLoad] = {}

    @property
    def index(self) -> int:
        return self._snap.index

    def add(self, result: PlanResult) -> None:
        for group in (result.node_update, result.node_allocation):
            for node_id, allocs in group.items():
                load = self.node_load(node_id)
                for alloc in allocs:
                    before = self.alloc(alloc.id)
                    if before is not None and before.node_id == node_id:
                        load = load.minus(before)
                    load = load.plus(alloc)
                    self._allocs[alloc.id] = alloc
                self._loads[node_id] = load

    def node(self, node_id: str) -> Node | None:
        return self._snap.node(node_id)

    def node_load(self, node_id: str) -> NodeLoad:
        load = self._loads.get(node_id)
        return load if load is not None else self._snap.node_load(node_id)

    def alloc(self, alloc_id: str) -> Allocation | None:
        alloc = self._allocs.get(alloc_id)
        return alloc if alloc is not None else self._snap.alloc(alloc_id)


def _ops_of(plan: Plan) -> int:
    """Operations the plan's commit takes: one per allocation and one per node."""
    nodes = plan.node_update.keys() | plan.node_allocation.keys()
    allocs = sum(len(v) for v in plan.node_update.values())
    allocs += sum(len(v) for v in plan.node_allocation.values())
    return allocs + len(nodes)
