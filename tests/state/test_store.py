"""The state store over the in-memory backend: snapshots, indexes, CAS and blocking."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from steppe.backend import Compare, Delete, MemoryBackend, Put
from steppe.errors import ConflictError
from steppe.state import SCHEDULER_TABLES, Keys, StateStore, Txn, writes
from steppe.structs import Allocation, Evaluation, Job, Node, PlanResult

KEYS = Keys()


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


async def test_plans_of_a_deposed_leader_cannot_commit(store: StateStore) -> None:
    lead_key = "/steppe/election/test/1"
    created = await store.commit(Txn((), (Put(lead_key, b"me"),)))
    fence = Compare(lead_key, "create", "==", created)
    placed = PlanResult(node_allocation={"n1": (Allocation(id="a1", node_id="n1"),)})
    [txn] = writes.apply_plans(KEYS, [placed], fence, max_ops=128)
    assert await store.try_commit(txn) is not None
    await store.commit(Txn((), (Delete(lead_key),)))  # the lease lapsed
    late = PlanResult(node_allocation={"n1": (Allocation(id="a2", node_id="n1"),)})
    [txn] = writes.apply_plans(KEYS, [late], fence, max_ops=128)
    assert await store.try_commit(txn) is None
    assert store.snapshot().alloc("a2") is None


async def test_plans_checked_together_commit_as_one_write(store: StateStore) -> None:
    first = PlanResult(
        node_allocation={
            "n1": (Allocation(id="a1", node_id="n1"),),
            "n2": (Allocation(id="a2", node_id="n2"),),
        }
    )
    stop = Allocation(id="a1", node_id="n1", desired_status="stop")
    second = PlanResult(node_update={"n1": (stop,)})
    [txn] = writes.apply_plans(KEYS, [first, second], None, max_ops=128)
    assert sum(isinstance(op, Put) and "/allocs/" in op.key for op in txn.ops) == 2
    before = store.snapshot().table_index("node_usage")
    await store.commit(txn)
    snap = store.snapshot()
    a1 = snap.alloc("a1")
    assert a1 is not None and a1.desired_status == "stop"  # the later plan's version
    assert snap.table_index("node_usage") > before  # n1 freed room: blocked evals wake
    assert snap.revision_of("node_usage", "n1") > 0 and snap.revision_of("node_usage", "n2") == 0


def test_plan_writes_split_at_whole_nodes_within_the_limits() -> None:
    result = PlanResult(
        node_allocation={
            f"n{i}": tuple(Allocation(id=f"a{i}-{j}", node_id=f"n{i}") for j in range(3))
            for i in range(4)
        }
    )
    txns = writes.apply_plans(KEYS, [result], None, max_ops=7)
    assert [len(t.ops) for t in txns] == [6, 6]
    one_node = sum(len(op.key) + len(op.value) for op in txns[0].ops[:3] if isinstance(op, Put))
    txns = writes.apply_plans(KEYS, [result], None, max_ops=128, max_bytes=one_node)
    assert [len(t.ops) for t in txns] == [3, 3, 3, 3]


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
