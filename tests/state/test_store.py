"""The state store over the in-memory backend: snapshots, indexes, CAS and blocking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from steppe.backend import MemoryBackend
from steppe.errors import ConflictError
from steppe.state import SCHEDULER_TABLES, Keys, StateStore, writes
from steppe.structs import Allocation, Evaluation, Job, Node, PlanResult

KEYS = Keys()


@pytest.fixture
async def store() -> AsyncIterator[StateStore]:
    backend = MemoryBackend(lease_check_interval=None)
    s = StateStore(backend, SCHEDULER_TABLES)
    await s.start()
    yield s
    await s.stop()


async def test_writes_are_visible_to_the_writers_next_snapshot(store: StateStore) -> None:
    job = Job(id="web", name="web")
    ev = Evaluation(id="e1", job_id="web")
    revision = await store.commit(writes.register_job(KEYS, job, 0, [ev]))
    snap = store.snapshot()
    stored = snap.job("default", "web")
    assert stored is not None
    assert stored.modify_index == revision == stored.create_index == stored.job_modify_index
    assert snap.job_version("default", "web", 0) is not None
    assert [e.id for e in snap.evals_by_job("default", "web")] == ["e1"]
    assert snap.table_index("jobs") == revision


async def test_snapshots_never_change_under_their_reader(store: StateStore) -> None:
    await store.commit(writes.upsert_node(KEYS, Node(id="n1", name="one")))
    before = store.snapshot()
    await store.commit(writes.upsert_node(KEYS, Node(id="n2", name="two")))
    assert [n.id for n in before.nodes()] == ["n1"]
    assert sorted(n.id for n in store.snapshot().nodes()) == ["n1", "n2"]


async def test_register_is_compare_and_set(store: StateStore) -> None:
    await store.commit(writes.register_job(KEYS, Job(id="web"), 0, []))
    with pytest.raises(ConflictError):
        await store.commit(writes.register_job(KEYS, Job(id="web", version=1), 0, []))
    current = store.snapshot().job("default", "web")
    assert current is not None and current.version == 0


async def test_secondary_indexes_follow_updates_and_deletes(store: StateStore) -> None:
    a = Allocation(id="a1", job_id="web", node_id="n1", eval_id="e1")
    await store.commit(writes.upsert_allocs(KEYS, [a]))
    await store.commit(writes.upsert_allocs(KEYS, [msgspec.structs.replace(a, node_id="n2")]))
    snap = store.snapshot()
    assert snap.allocs_by_node("n1") == []
    assert [x.id for x in snap.allocs_by_node("n2")] == ["a1"]
    await store.commit(writes.delete_evals_and_allocs(KEYS, [], ["a1"]))
    snap = store.snapshot()
    assert snap.allocs_by_job("default", "web") == [] and snap.alloc("a1") is None


async def test_plan_commits_per_node_and_rejects_nodes_touched_since(store: StateStore) -> None:
    placed = {
        "n1": (Allocation(id="a1", node_id="n1"),),
        "n2": (Allocation(id="a2", node_id="n2"),),
    }
    seen = store.snapshot()
    # another plan lands on n2 first
    await store.commit(
        writes.apply_plan(KEYS, PlanResult(node_allocation={"n2": placed["n2"]}), {}, 128)[0][1]
    )
    txns = writes.apply_plan(
        KEYS,
        PlanResult(node_allocation=placed),
        {n: seen.node_usage_revision(n) for n in placed},
        max_ops=2,
    )
    assert len(txns) == 2  # one node's share per transaction at this op limit
    assert [nodes for nodes, _ in txns] == [("n1",), ("n2",)]
    outcomes = [await store.try_commit(t) for _, t in txns]
    assert outcomes[0] is not None and outcomes[1] is None
    assert store.snapshot().alloc("a1") is not None


async def test_blocking_query_wakes_on_its_table_only(store: StateStore) -> None:
    start = store.snapshot().table_index("jobs")
    waiter = asyncio.ensure_future(store.block(["jobs"], start, timeout=30))
    await store.commit(writes.upsert_node(KEYS, Node(id="n1")))
    await asyncio.sleep(0)
    assert not waiter.done()
    await store.commit(writes.register_job(KEYS, Job(id="web"), 0, []))
    snap = await asyncio.wait_for(waiter, 30)
    assert snap.table_index("jobs") > start


async def test_blocking_query_times_out_with_current_state(store: StateStore) -> None:
    snap = await store.block(["jobs"], 10**9, timeout=0.01)
    assert snap.index == store.revision


async def test_restart_reloads_everything_from_the_backend() -> None:
    backend = MemoryBackend(lease_check_interval=None)
    first = StateStore(backend, SCHEDULER_TABLES)
    await first.start()
    await first.commit(writes.register_job(KEYS, Job(id="web"), 0, [Evaluation(id="e")]))
    await first.stop()
    second = StateStore(backend, SCHEDULER_TABLES)
    await second.start()
    try:
        assert second.snapshot().job("default", "web") is not None
        assert second.snapshot().eval("e") is not None
    finally:
        await second.stop()
