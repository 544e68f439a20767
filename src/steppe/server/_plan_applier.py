"""The leader's plan applier: re-checks each plan against the newest state and commits
what still fits, plans that queued up together in one transaction.

It is serial by design (only it decides what commits), and committing is its slow
part: a quorum write, then the watch bringing the write back into the cache. So the
plans that arrive while one commit is in flight are checked one after another, each
against the state plus the results of those before it, and committed together, as
etcd's own group commit does for its log. Each plan's answer is exactly what it would
have been alone: the part that fits, node by node.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

import msgspec

from steppe._tasks import cancel_all
from steppe.backend import Compare
from steppe.errors import NotLeaderError
from steppe.scheduler import evaluate_plan
from steppe.state import Keys, StateSnapshot, StateStore, writes
from steppe.structs import Allocation, Node, Plan, PlanResult

Answer = tuple[PlanResult, StateSnapshot | None]


class PlanApplier:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.keys = Keys(store.root)
        self._queue: deque[tuple[Plan, asyncio.Future[Answer]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.fence: Compare | None = None
        """Carried by every commit (see ``writes.apply_plans``); the leader sets it."""

    async def apply(self, plan: Plan) -> Answer:
        """What of ``plan`` committed, and a newer snapshot to plan again on if not all
        of it did."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        self._queue.append((plan, answer))
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
        while self._queue:
            batch = self._next_batch()
            if not batch:
                continue
            try:
                answers = await self._apply_batch([plan for plan, _ in batch])
            except asyncio.CancelledError:
                for _, answer in batch:
                    answer.cancel()
                raise
            except Exception as exc:
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), result in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(result)

    def _next_batch(self) -> list[tuple[Plan, asyncio.Future[Answer]]]:
        """Queued plans, in order, up to about one transaction's worth of operations."""
        budget = self.store.backend.max_txn_ops
        batch: list[tuple[Plan, asyncio.Future[Answer]]] = []
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

    async def _apply_batch(self, plans: Sequence[Plan]) -> list[Answer]:
        pending = PendingState(self.store.snapshot())
        results: list[PlanResult] = []
        for plan in plans:
            result = evaluate_plan(pending, plan)
            pending.add(result)
            results.append(result)
        revision = await self._commit(results)
        answers: list[Answer] = []
        for plan, result in zip(plans, results, strict=True):
            if result.fully_committed(plan):
                answers.append((msgspec.structs.replace(result, alloc_index=revision), None))
                continue
            # the worker plans the rest again on state that holds what did commit
            refresh = max(result.refresh_index, revision)
            result = msgspec.structs.replace(result, refresh_index=refresh, alloc_index=revision)
            answers.append((result, self.store.snapshot()))
        return answers

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
        self._by_node: dict[str, dict[str, Allocation]] = {}

    @property
    def index(self) -> int:
        return self._snap.index

    def add(self, result: PlanResult) -> None:
        for group in (result.node_update, result.node_allocation):
            for node_id, allocs in group.items():
                self._by_node.setdefault(node_id, {}).update((a.id, a) for a in allocs)

    def node(self, node_id: str) -> Node | None:
        return self._snap.node(node_id)

    def allocs_by_node(self, node_id: str) -> list[Allocation]:
        stored = self._snap.allocs_by_node(node_id)
        pending = self._by_node.get(node_id)
        if not pending:
            return stored
        return [a for a in stored if a.id not in pending] + list(pending.values())


def _ops_of(plan: Plan) -> int:
    """Operations the plan's commit takes: one per allocation and one per node."""
    nodes = plan.node_update.keys() | plan.node_allocation.keys()
    allocs = sum(len(v) for v in plan.node_update.values())
    allocs += sum(len(v) for v in plan.node_allocation.values())
    return allocs + len(nodes)
