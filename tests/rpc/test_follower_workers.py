"""Followers schedule too: evaluations from the leader's broker, plans to its applier,
both over RPC; the follower reads its own copy of the state."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from tests.support.waiting import async_wait_until

from steppe.backend import MemoryBackend
from steppe.rpc import LeaderClient, RPCClient, RPCServer, ServerEndpoint
from steppe.server import FollowerWorkers, Server, ServerInfo
from steppe.state import SCHEDULER_TABLES, StateStore
from steppe.structs import Resources
from steppe.testing import mock


@dataclasses.dataclass
class Region:
    leader: Server
    follower_store: StateStore
    workers: FollowerWorkers


@pytest.fixture
async def region() -> AsyncIterator[Region]:
    backend = MemoryBackend(lease_check_interval=None)
    leader_store = StateStore(backend, SCHEDULER_TABLES)
    follower_store = StateStore(backend, SCHEDULER_TABLES)
    await leader_store.start()
    await follower_store.start()
    info = ServerInfo("s1", "global", "dc1", "127.0.0.1:0", "127.0.0.1:0")
    leader = Server(leader_store, info, workers=0)
    rpc = RPCServer(ServerEndpoint(leader), "127.0.0.1", 0)
    await rpc.start()
    await leader.start_leading()
    client = LeaderClient(RPCClient(rpc.address))
    workers = FollowerWorkers(follower_store, lambda: client, count=2)
    workers.start()
    try:
        yield Region(leader, follower_store, workers)
    finally:
        await workers.stop()
        await client.client.close()
        await rpc.stop()
        await leader.stop()
        await follower_store.stop()
        await leader_store.stop()
        await backend.close()


async def test_a_follower_places_what_the_leader_broker_hands_out(region: Region) -> None:
    for i in range(2):
        await region.leader.register_node(mock.node(id=f"n{i}"))
    job = mock.job(id="web", task_groups=(mock.group(count=4),))
    result = await region.leader.endpoints.register_job(job)

    def placed() -> bool:
        allocs = region.leader.store.snapshot().allocs_by_job("default", "web")
        return len([a for a in allocs if not a.terminal()]) == 4

    await async_wait_until(placed, timeout=30, what="4 allocations placed")
    ev = region.leader.store.snapshot().eval(result.eval_id)
    assert ev is not None and ev.status == "complete"
    assert region.workers.processed >= 1
    # the leader ran no worker of its own: the follower did the scheduling
    assert region.leader.leader.broker.stats()["TotalUnacked"] == 0


async def test_what_does_not_fit_waits_blocked_and_nothing_is_oversubscribed(
    region: Region,
) -> None:
    await region.leader.register_node(mock.node(id="only"))
    big = mock.group(count=200, tasks=(mock.task(resources=Resources(cpu=100, memory_mb=10)),))
    await region.leader.endpoints.register_job(mock.job(id="big", task_groups=(big,)))

    def settled() -> bool:
        evals = region.leader.store.snapshot().evals_by_job("default", "big")
        return bool(evals) and all(e.terminal() or e.status == "blocked" for e in evals)

    await async_wait_until(settled, timeout=30, what="eval settled")
    node = region.leader.store.snapshot().node("only")
    assert node is not None
    live = [a for a in region.leader.store.snapshot().allocs_by_node("only") if not a.terminal()]
    assert 0 < len(live) < 200
    assert sum(a.allocated_resources.cpu() for a in live) <= node.resources.cpu
    evals = region.leader.store.snapshot().evals_by_job("default", "big")
    assert any(e.status == "blocked" for e in evals)
