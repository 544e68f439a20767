"""A remote client's ServerAPI against real servers over loopback RPC: registration,
heartbeats, blocking allocation queries, following the leader, and failing over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
from tests.rpc.conftest import MakeMember, Member
from tests.support.waiting import async_wait_until

from steppe.errors import NotFoundError, ValidationError
from steppe.rpc import RemoteServerAPI, RPCClient, UnreachableError
from steppe.rpc._endpoint import NODE_ALLOCATIONS, PING
from steppe.server import NotLeaderError
from steppe.structs import CLIENT_RUNNING, NODE_STATUS_READY
from steppe.testing import mock


@pytest.fixture
async def apis() -> AsyncIterator[Callable[[list[str]], RemoteServerAPI]]:
    made: list[RemoteServerAPI] = []

    def make(servers: list[str]) -> RemoteServerAPI:
        api = RemoteServerAPI(servers, call_timeout=10, connect_timeout=5, block_margin=5)
        made.append(api)
        return api

    try:
        yield make
    finally:
        for api in made:
            await api.close()


async def test_register_and_heartbeat(leader: Member, apis: Callable[..., RemoteServerAPI]) -> None:
    api = apis([leader.address])
    node = mock.node()
    assert await api.register_node(node) > 0
    assert await api.heartbeat(node.id) > 0
    stored = leader.store.snapshot().node(node.id)
    assert stored is not None and stored.status == NODE_STATUS_READY
    assert api.leader == leader.address
    assert await api.ping() == "s1"
    assert await api.status_leader() == leader.address


async def test_unknown_node_is_not_found_on_the_client(
    leader: Member, apis: Callable[..., RemoteServerAPI]
) -> None:
    api = apis([leader.address])
    with pytest.raises(NotFoundError, match="node not found: nope"):
        await api.heartbeat("nope")


async def test_blocking_query_wakes_when_an_allocation_is_placed(
    leader: Member, apis: Callable[..., RemoteServerAPI]
) -> None:
    api = apis([leader.address])
    node = mock.node()
    await api.register_node(node)
    allocs, index = await api.node_allocations(node.id, 0, 0)
    assert allocs == []
    waiting = asyncio.create_task(api.node_allocations(node.id, index, 60))
    await async_wait_until(lambda: leader.rpc.in_flight == 1, what="the query in flight")
    assert not waiting.done()
    await leader.server.endpoints.register_job(
        mock.job(id="web", task_groups=(mock.group(count=1),))
    )
    allocs, new_index = await asyncio.wait_for(waiting, 30)
    assert new_index > index
    assert [a.node_id for a in allocs] == [node.id]
    assert allocs[0].job is not None and allocs[0].job.id == "web"

    running = msgspec.structs.replace(allocs[0], client_status=CLIENT_RUNNING)
    await api.update_allocs([running])

    async def reported() -> bool:
        stored = leader.store.snapshot().alloc(running.id)
        return stored is not None and stored.client_status == CLIENT_RUNNING

    await async_wait_until(reported, what="the client status in state")


async def test_a_blocking_query_does_not_delay_a_ping(leader: Member) -> None:
    client = RPCClient(leader.address)
    try:
        _, index = await client.call(NODE_ALLOCATIONS, "some-node", 0, 0.0)
        waiting = asyncio.create_task(client.call(NODE_ALLOCATIONS, "some-node", index, 60.0))
        await async_wait_until(lambda: leader.rpc.in_flight == 1, what="query in flight")
        assert await asyncio.wait_for(client.call(PING), 10) == "s1"
        assert not waiting.done()
        assert leader.rpc.connection_count == 1
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    finally:
        await client.close()


async def test_leader_only_calls_follow_the_not_leader_answer(
    make_member: MakeMember, apis: Callable[..., RemoteServerAPI]
) -> None:
    leader = await make_member("s1")
    follower = await make_member("s2", leader=False)
    await follower.server.stop_leading(new_leader=leader.address)
    direct = RPCClient(follower.address)
    try:
        with pytest.raises(NotLeaderError) as caught:
            await direct.call("heartbeat", "n1")
        assert caught.value.leader == leader.address
    finally:
        await direct.close()

    api = apis([follower.address])
    node = mock.node()
    assert await api.register_node(node) > 0
    assert api.leader == leader.address
    assert api.known_servers == [follower.address]
    assert await api.heartbeat(node.id) > 0
    assert await api.ping() == "s2"


async def test_no_leader_anywhere_is_a_not_leader_error(
    make_member: MakeMember, apis: Callable[..., RemoteServerAPI]
) -> None:
    follower = await make_member("s2", leader=False)
    api = apis([follower.address])
    with pytest.raises(NotLeaderError, match="leader: unknown"):
        await api.register_node(mock.node())


async def test_failover_when_a_server_goes_away(
    make_member: MakeMember, apis: Callable[..., RemoteServerAPI]
) -> None:
    first = await make_member("s1")
    second = await make_member("s2", leader=False)
    await second.server.stop_leading(new_leader=first.address)
    api = apis([first.address, second.address])
    node = mock.node()
    await api.register_node(node)
    assert api.leader == first.address
    assert await api.ping() == "s1"

    await first.rpc.stop()
    await first.server.stop_leading(new_leader=second.address)
    await second.server.start_leading()

    assert await api.ping() == "s2"
    assert await api.heartbeat(node.id) > 0
    assert api.leader == second.address
    allocs, index = await api.node_allocations(node.id, 0, 0)
    assert allocs == [] and index >= 0
    await api.update_allocs([])


async def test_every_server_down_is_one_clear_error(
    make_member: MakeMember, apis: Callable[..., RemoteServerAPI]
) -> None:
    first = await make_member("s1")
    second = await make_member("s2", leader=False)
    api = apis([first.address, second.address])
    await first.rpc.stop()
    await second.rpc.stop()
    with pytest.raises(UnreachableError, match="no server answered") as caught:
        await api.heartbeat("n1")
    assert first.address in str(caught.value) and second.address in str(caught.value)
    with pytest.raises(UnreachableError, match="no server answered"):
        await api.node_allocations("n1", 0, 0)


async def test_server_list_updates(
    make_member: MakeMember, apis: Callable[..., RemoteServerAPI]
) -> None:
    peers: list[str] = []
    first = await make_member("s1", peers=peers)
    second = await make_member("s2", leader=False)
    peers += [first.address, second.address]

    api = apis([])
    with pytest.raises(UnreachableError, match="no scheduler servers known"):
        await api.ping()
    api.set_servers([first.address])
    assert await api.refresh_servers() == [first.address, second.address]
    assert await api.peers() == [first.address, second.address]
    with pytest.raises(ValidationError, match="is not host:port"):
        api.set_servers(["not-an-address"])
    assert api.known_servers == [first.address, second.address]
    api.set_servers([second.address])
    assert api.known_servers == [second.address]
    assert await api.ping() == "s2"
