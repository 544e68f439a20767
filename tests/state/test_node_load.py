"""The per-node load the state store keeps (what a node's live allocations hold) must
always equal adding those allocations up from scratch, whatever happened to them."""

from __future__ import annotations

import random
from collections import Counter

import msgspec

from steppe.backend import MemoryBackend
from steppe.state import SCHEDULER_TABLES, Keys, StateSnapshot, StateStore, writes
from steppe.structs import (
    CLIENT_FAILED,
    CLIENT_RUNNING,
    DESIRED_STOP,
    NO_LOAD,
    AllocatedPortMapping,
    AllocatedSharedResources,
    Allocation,
    PlanResult,
)
from steppe.testing import mock

KEYS = Keys()
NODES = ("n1", "n2", "n3")


def alloc(alloc_id: str, node_id: str, cpu: int, port: int | None) -> Allocation:
    res = mock.resources(cpu=cpu, memory_mb=cpu // 2)
    if port is not None:
        shared = AllocatedSharedResources(ports=(AllocatedPortMapping(label="p", value=port),))
        res = msgspec.structs.replace(res, shared=shared)
    return mock.alloc(id=alloc_id, node_id=node_id, allocated_resources=res)


def from_scratch(snap: StateSnapshot, node_id: str) -> tuple[int, int, dict[int, int], int]:
    live = [a for a in snap.allocs_by_node(node_id) if not a.terminal()]
    ports = Counter(p.value for a in live for p in a.allocated_resources.shared.ports)
    cpu = sum(t.cpu.cpu_shares for a in live for t in a.allocated_resources.tasks.values())
    memory = sum(t.memory.memory_mb for a in live for t in a.allocated_resources.tasks.values())
    return cpu, memory, dict(ports), len(live)


def as_tuple(snap: StateSnapshot, node_id: str) -> tuple[int, int, dict[int, int], int]:
    load = snap.node_load(node_id)
    return load.cpu, load.memory, dict(load.ports), load.allocs


async def test_a_port_stays_taken_until_its_last_holder_goes(store: StateStore) -> None:
    a, b = alloc("a", "n1", 100, 8080), alloc("b", "n1", 200, 8080)
    placed = PlanResult(node_allocation={"n1": (a, b)})
    for txn in writes.apply_plans(KEYS, [placed], None, max_ops=128):
        await store.commit(txn)
    assert as_tuple(store.snapshot(), "n1") == (300, 150, {8080: 2}, 2)
    failed = msgspec.structs.replace(store.snapshot().alloc("a"), client_status=CLIENT_FAILED)
    await store.commit(writes.upsert_allocs(KEYS, [failed]))
    assert as_tuple(store.snapshot(), "n1") == (200, 100, {8080: 1}, 1)
    await store.commit(writes.delete_evals_and_allocs(KEYS, [], ["a", "b"]))
    assert store.snapshot().node_load("n1") is NO_LOAD


async def test_load_matches_the_allocations_through_any_history(
    store: StateStore, backend: MemoryBackend
) -> None:
    rng = random.Random(7)
    ids: list[str] = []
    for step in range(300):
        snap = store.snapshot()
        action = rng.choice(["place", "place", "run", "fail", "stop", "delete"])
        if action == "place" or not ids:
            new = alloc(
                f"a{step}", rng.choice(NODES), rng.choice([100, 250]), rng.choice([None, 80, 81])
            )
            ids.append(new.id)
            for txn in writes.apply_plans(
                KEYS, [PlanResult(node_allocation={new.node_id: (new,)})], None, 128
            ):
                await store.commit(txn)
        else:
            current = snap.alloc(rng.choice(ids))
            assert current is not None
            if action == "delete":
                ids.remove(current.id)
                await store.commit(writes.delete_evals_and_allocs(KEYS, [], [current.id]))
            elif action == "stop":
                stopped = msgspec.structs.replace(current, desired_status=DESIRED_STOP)
                stop = PlanResult(node_update={current.node_id: (stopped,)})
                for txn in writes.apply_plans(KEYS, [stop], None, 128):
                    await store.commit(txn)
            else:
                status = CLIENT_RUNNING if action == "run" else CLIENT_FAILED
                update = msgspec.structs.replace(current, client_status=status)
                await store.commit(writes.upsert_allocs(KEYS, [update]))
        snap = store.snapshot()
        for node_id in NODES:
            assert as_tuple(snap, node_id) == from_scratch(snap, node_id), f"step {step}"

    relisted = StateStore(backend, SCHEDULER_TABLES)
    await relisted.start()
    try:
        for node_id in NODES:
            assert relisted.snapshot().node_load(node_id) == store.snapshot().node_load(node_id)
    finally:
        await relisted.stop()
