"""The leader's plan applier over the in-memory backend: plans that queue up together
are checked one after another and committed as one write; a deposed leader commits
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest
from tests.support.waiting import async_wait_until

from steppe.backend import Compare, Delete, MemoryBackend, Op, Put, TxnResult
from steppe.errors import NotLeaderError
from steppe.server._plan_applier import PlanApplier
from steppe.state import SCHEDULER_TABLES, Keys, StateStore, Txn, writes
from steppe.structs import Allocation, Node, Plan
from steppe.testing import mock

KEYS = Keys()


class CountingBackend(MemoryBackend):
    """Counts the transactions that write allocations, and holds them while ``gate`` is
    closed, as a slow quorum write would."""

    def __init__(self) -> None:
        super().__init__(lease_check_interval=None)
        self.alloc_writes = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if any(isinstance(op, Put) and "/allocs/" in op.key for op in success):
            self.alloc_writes += 1
            await self.gate.wait()
        return await super().txn(compares, success, failure)


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
async def store(backend: CountingBackend) -> AsyncIterator[StateStore]:
    s = StateStore(backend, SCHEDULER_TABLES)
    await s.start()
    yield s
    await s.stop()


async def stored_nodes(store: StateStore, count: int) -> list[Node]:
    nodes = [mock.node() for _ in range(count)]
    for node in nodes:
        await store.commit(writes.upsert_node(KEYS, node))
    return nodes


def big_alloc(node_id: str) -> Allocation:
    """Over half of a mock node's CPU: two fit alone, never together."""
    res = mock.resources()
    task = msgspec.structs.replace(res.tasks["web"], cpu=msgspec.structs.replace(
        res.tasks["web"].cpu, cpu_shares=2500))  # fmt: skip
    return mock.alloc(
        node_id=node_id,
        allocated_resources=msgspec.structs.replace(res, tasks={"web": task}),
    )


async def test_plans_queued_together_are_checked_in_order_and_written_once(
    store: StateStore, backend: CountingBackend
) -> None:
    node, other = await stored_nodes(store, 2)
    applier = PlanApplier(store)
    first = Plan(node_allocation={node.id: (big_alloc(node.id),)})
    second = Plan(
        node_allocation={node.id: (big_alloc(node.id),), other.id: (big_alloc(other.id),)}
    )
    (r1, fresh1), (r2, fresh2) = await asyncio.gather(applier.apply(first), applier.apply(second))
    assert r1.fully_committed(first) and fresh1 is None
    # each fits ``node`` alone; checked after the first, the second no longer does there
    assert list(r2.node_allocation) == [other.id] and fresh2 is not None
    assert backend.alloc_writes == 1
    live = [a for a in store.snapshot().allocs_by_node(node.id) if not a.terminal()]
    assert len(live) == 1
    # the worker re-plans on state that holds what committed, never on older state
    assert r2.refresh_index >= r1.alloc_index > 0
    assert fresh2.alloc(first.node_allocation[node.id][0].id) is not None


async def test_plans_are_checked_while_earlier_commits_are_in_flight(
    store: StateStore, backend: CountingBackend
) -> None:
    node, other = await stored_nodes(store, 2)
    applier = PlanApplier(store)
    backend.gate.clear()
    first = Plan(node_allocation={node.id: (big_alloc(node.id),)})
    committing = asyncio.ensure_future(applier.apply(first))
    await async_wait_until(lambda: backend.alloc_writes == 1, what="first commit sent")
    second = Plan(
        node_allocation={node.id: (big_alloc(node.id),), other.id: (big_alloc(other.id),)}
    )
    checking = asyncio.ensure_future(applier.apply(second))
    # the second is checked and sent while the first is still being written, and the
    # first's allocation counts as placed
    await async_wait_until(lambda: backend.alloc_writes == 2, what="second commit sent")
    backend.gate.set()
    (r1, _), (r2, _) = await asyncio.gather(committing, checking)
    assert r1.fully_committed(first)
    assert list(r2.node_allocation) == [other.id]
    assert len(store.snapshot().allocs_by_node(node.id)) == 1


async def test_a_deposed_leader_commits_nothing(store: StateStore) -> None:
    [node] = await stored_nodes(store, 1)
    lead_key = "/steppe/election/test/1"
    created = await store.commit(Txn((), (Put(lead_key, b"me"),)))
    applier = PlanApplier(store)
    applier.fence = Compare(lead_key, "create", "==", created)
    placed = Plan(node_allocation={node.id: (big_alloc(node.id),)})
    result, _ = await applier.apply(placed)
    assert result.fully_committed(placed)
    await store.commit(Txn((), (Delete(lead_key),)))  # its lease lapsed
    late = mock.alloc(node_id=node.id)
    with pytest.raises(NotLeaderError):
        await applier.apply(Plan(node_allocation={node.id: (late,)}))
    assert store.snapshot().alloc(late.id) is None


async def test_stopping_fails_the_plans_still_queued(store: StateStore) -> None:
    [node] = await stored_nodes(store, 1)
    applier = PlanApplier(store)
    queued = asyncio.ensure_future(
        applier.apply(Plan(node_allocation={node.id: (big_alloc(node.id),)}))
    )
    await asyncio.sleep(0)  # let it queue; the applier has not picked it up yet
    await applier.stop()
    with pytest.raises(NotLeaderError):
        await queued
    assert not store.snapshot().allocs_by_node(node.id)
