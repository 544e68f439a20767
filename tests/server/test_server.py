"""A server on the in-memory backend, driven in-process: the path from a registered
job to committed allocations, and from a missed heartbeat to replacements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest
from tests.support.waiting import async_wait_until

from steppe.backend import Compare, MemoryBackend, Op, TxnResult
from steppe.server import Endpoints, HeartbeatPolicy, Server, ServerInfo
from steppe.state import SCHEDULER_TABLES, Keys, StateStore, writes
from steppe.structs import CLIENT_FAILED, CLIENT_RUNNING, NS, Allocation, Job, ReschedulePolicy
from steppe.testing import mock

INFO = ServerInfo("s1", "global", "dc1", "127.0.0.1:4647", "127.0.0.1:4646")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    store = StateStore(MemoryBackend(lease_check_interval=None), SCHEDULER_TABLES)
    await store.start()
    srv = Server(store, INFO, heartbeat_policy=HeartbeatPolicy(min_ttl=5, grace=1))
    await srv.start_leading()
    yield srv
    await srv.stop()
    await store.stop()


def running(server: Server, job_id: str) -> list[Allocation]:
    return [a for a in server.store.snapshot().allocs_by_job("default", job_id) if not a.terminal()]


async def test_registered_job_gets_its_allocations(server: Server) -> None:
    for i in range(2):
        await server.register_node(mock.node(id=f"n{i}", name=f"node{i}"))
    job = web_job(3)
    result = await server.endpoints.register_job(job)
    await async_wait_until(lambda: len(running(server, "web")) == 3, what="3 allocations placed")
    ev = server.store.snapshot().eval(result.eval_id)
    assert ev is not None and ev.status == "complete"


async def test_stopping_a_job_stops_its_allocations(server: Server) -> None:
    await server.register_node(mock.node(id="n0"))
    await server.endpoints.register_job(web_job(2))
    await async_wait_until(lambda: len(running(server, "web")) == 2, what="placed")
    await server.endpoints.deregister_job("default", "web", purge=False)
    await async_wait_until(lambda: not running(server, "web"), what="stopped")
    job = server.store.snapshot().job("default", "web")
    assert job is not None and job.stop and job.version == 1


async def test_failed_allocation_is_replaced(server: Server) -> None:
    await server.register_node(mock.node(id="n0"))
    await server.endpoints.register_job(web_job(1))
    await async_wait_until(lambda: len(running(server, "web")) == 1, what="placed")
    alloc = running(server, "web")[0]
    await server.update_allocs([msgspec.structs.replace(alloc, client_status=CLIENT_RUNNING)])
    await server.update_allocs([msgspec.structs.replace(alloc, client_status=CLIENT_FAILED)])

    def replaced() -> bool:
        allocs = server.store.snapshot().allocs_by_job("default", "web")
        return any(a.previous_allocation == alloc.id for a in allocs)

    await async_wait_until(replaced, timeout=60, what="replacement")


def web_job(count: int) -> Job:
    policy = ReschedulePolicy(
        attempts=3, interval=600 * NS, delay=0, delay_function="constant", unlimited=False
    )
    return mock.job(id="web", task_groups=(mock.group(count=count, reschedule_policy=policy),))


class StopInBetween(MemoryBackend):
    """Commits ``stop`` just before the first guarded allocation write, as the plan
    applier would if it stopped the allocation while a client update was merging."""

    def __init__(self) -> None:
        super().__init__(lease_check_interval=None)
        self.stop: Sequence[Op] | None = None

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if self.stop is not None and compares and "/allocs/" in compares[0].key:
            ops, self.stop = self.stop, None
            await super().txn([], ops)
        return await super().txn(compares, success, failure)


async def test_client_update_never_undoes_a_stop_written_meanwhile() -> None:
    backend = StopInBetween()
    store = StateStore(backend, SCHEDULER_TABLES)
    await store.start()
    alloc = mock.alloc(node_id="n1")
    try:
        await store.commit(writes.upsert_allocs(Keys(), [alloc]))
        stopped = msgspec.structs.replace(alloc, desired_status="stop")
        backend.stop = writes.upsert_allocs(Keys(), [stopped]).ops
        endpoints = Endpoints(store, "global")
        await endpoints.update_allocs_from_client(
            [msgspec.structs.replace(alloc, client_status=CLIENT_RUNNING)]
        )
        assert backend.stop is None  # the stop did land in between
        final = store.snapshot().alloc(alloc.id)
        assert final is not None
        assert (final.desired_status, final.client_status) == ("stop", CLIENT_RUNNING)
    finally:
        await store.stop()
