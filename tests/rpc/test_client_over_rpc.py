"""The real client agent core over RPC: it registers, runs what the servers place on it
with the raw_exec driver, and carries on through a leader failover to another server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.rpc.conftest import MakeMember, Member
from tests.support.waiting import async_wait_until

from steppe.client import Client
from steppe.drivers._raw_exec import RawExecDriver
from steppe.rpc import RemoteServerAPI
from steppe.structs import CLIENT_COMPLETE, CLIENT_RUNNING, NS, Job
from steppe.testing import mock


def sleeper_job() -> Job:
    task = mock.task(
        name="sleep",
        driver="raw_exec",
        config={"command": "/bin/sleep", "args": ["300"]},
        kill_timeout=2 * NS,
    )
    return mock.job(id="sleeper", task_groups=(mock.group(count=1, tasks=(task,), networks=()),))


@pytest.fixture
async def servers(make_member: MakeMember) -> tuple[Member, Member]:
    first = await make_member("s1")
    second = await make_member("s2", leader=False)
    await second.server.stop_leading(new_leader=first.address)
    return first, second


@pytest.fixture
async def client(servers: tuple[Member, Member], tmp_path: Path) -> AsyncIterator[Client]:
    first, second = servers
    api = RemoteServerAPI([first.address, second.address], call_timeout=10, block_margin=5)
    node = mock.node(drivers=mock.drivers("raw_exec"))
    client = Client(
        api,
        {"raw_exec": RawExecDriver(enabled=True)},
        tmp_path / "client",
        node,
        blocking_wait=30,
        retry_max=1,
    )
    await client.start()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.stop(leave_running=False)
        await api.close()


def alloc_status(member: Member, job_id: str) -> str | None:
    allocs = member.store.snapshot().allocs_by_job("default", job_id)
    return allocs[0].client_status if allocs else None


async def test_a_remote_client_runs_its_allocation_through_a_leader_failover(
    servers: tuple[Member, Member], client: Client
) -> None:
    first, second = servers
    await first.server.endpoints.register_job(sleeper_job())

    async def status_is(status: str) -> bool:
        return alloc_status(second, "sleeper") == status

    await async_wait_until(lambda: status_is(CLIENT_RUNNING), what="allocation running")
    api = client.server
    assert isinstance(api, RemoteServerAPI)
    assert api.leader == first.address

    await first.rpc.stop()
    await first.server.stop_leading(new_leader=second.address)
    await second.server.start_leading()

    async def follows_new_leader() -> bool:
        return api.leader == second.address

    await async_wait_until(follows_new_leader, what="heartbeats at the new leader")
    assert await status_is(CLIENT_RUNNING)
    await second.server.endpoints.deregister_job("default", "sleeper", purge=False)
    await async_wait_until(lambda: status_is(CLIENT_COMPLETE), what="allocation stopped")
