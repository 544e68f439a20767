"""A real 3-member etcd cluster: the backend rides through the death of the etcd leader,
and members can be replaced, restarted and removed."""

from __future__ import annotations

import asyncio
import os
import signal

from tests.support.etcd import EtcdTestCluster
from tests.support.waiting import async_wait_until

from steppe.backend import EtcdBackend, Event
from steppe.errors import BackendError
from steppe.etcdmember import EtcdCluster, initial_cluster


async def put_until_acknowledged(backend: EtcdBackend, key: str, value: bytes) -> int:
    """Retrying is safe here: the same key gets the same value again."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await backend.put(key, value)
            except BackendError:
                continue


async def test_backend_survives_kill_of_the_etcd_leader(etcd_cluster3: EtcdTestCluster) -> None:
    leader = await async_wait_until(etcd_cluster3.leader, what="etcd leader")
    others = [m.endpoint for m in etcd_cluster3.members if m is not leader]
    # The leader first: the channel is connected to the member that dies.
    backend = EtcdBackend([leader.endpoint, *others], request_timeout=3)
    seen: list[Event] = []

    async def watch(start: int) -> None:
        async for events in backend.watch("/k/", start):
            seen.extend(events)

    try:
        start = await backend.current_revision() + 1
        watcher = asyncio.create_task(watch(start))
        acknowledged = {}
        for i in range(10):
            acknowledged[f"/k/{i:02}"] = await put_until_acknowledged(
                backend, f"/k/{i:02}", str(i).encode()
            )
        leader.kill()
        for i in range(10, 30):
            acknowledged[f"/k/{i:02}"] = await put_until_acknowledged(
                backend, f"/k/{i:02}", str(i).encode()
            )

        async def all_seen() -> bool:
            return {e.kv.key for e in seen} >= set(acknowledged)

        await async_wait_until(all_seen, timeout=30, what="watch to deliver every write")
        revisions = [e.kv.mod_revision for e in seen]
        assert revisions == sorted(set(revisions)), "watch repeated or reordered revisions"
        kvs, _ = await backend.range("/k/")
        assert {kv.key: kv.value for kv in kvs} == {
            k: str(int(k[3:])).encode() for k in acknowledged
        }
        new_leader = await async_wait_until(etcd_cluster3.leader, what="new etcd leader")
        assert new_leader is not leader
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    finally:
        await backend.close()


async def test_replace_a_dead_member(etcd_cluster3: EtcdTestCluster) -> None:
    dead = etcd_cluster3.member("m2")
    dead.kill()
    survivors = [m.endpoint for m in etcd_cluster3.running()]
    async with EtcdCluster(survivors) as cluster:
        assert await cluster.remove_member_named("m2")
        assert sorted(m.name for m in await cluster.members()) == ["m0", "m1"]

        fresh = etcd_cluster3.new_member("m3")
        members = await cluster.add_member(fresh.peer_url)
        fresh.initial_cluster = initial_cluster(members, fresh.name, fresh.peer_url)
        fresh.cluster_state = "existing"
        await fresh.start(timeout=30)

        async def three_named() -> bool:
            return sorted(m.name for m in await cluster.members()) == ["m0", "m1", "m3"]

        await async_wait_until(three_named, what="m3 to join under its name")

    backend = EtcdBackend([fresh.endpoint])
    try:
        revision = await backend.put("/replaced", b"yes")
        kv = await backend.get("/replaced")
        assert kv is not None and kv.mod_revision == revision
    finally:
        await backend.close()


async def test_member_restarts_on_its_data_and_catches_up(
    etcd_cluster3: EtcdTestCluster,
) -> None:
    follower = etcd_cluster3.member("m1")
    await follower.stop()
    assert not follower.running and follower.has_data
    backend = EtcdBackend([m.endpoint for m in etcd_cluster3.running()])
    try:
        revision = await backend.put("/while-away", b"1")
    finally:
        await backend.close()
    await follower.restart(timeout=30)
    only_follower = EtcdBackend([follower.endpoint])
    try:
        kv = await only_follower.get("/while-away")
        assert kv is not None and kv.mod_revision == revision
    finally:
        await only_follower.close()


async def test_supervised_member_comes_back_after_a_crash(
    etcd_single: EtcdTestCluster,
) -> None:
    member = etcd_single.members[0]
    supervisor = asyncio.create_task(member.supervise(backoff=0.05, poll=0.02))
    try:
        crashed_pid = member.pid
        assert crashed_pid is not None
        os.kill(crashed_pid, signal.SIGKILL)
        await async_wait_until(
            lambda: member.pid != crashed_pid and member.is_healthy(),
            what="supervisor to restart the member",
        )
        assert member.restarts == 1
        backend = EtcdBackend([member.endpoint])
        try:
            assert await backend.put("/after-crash", b"ok") > 0
        finally:
            await backend.close()
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)


async def test_timeout_view_shares_the_connection(etcd_single: EtcdTestCluster) -> None:
    backend = EtcdBackend(etcd_single.endpoints)
    try:
        quick = backend.with_timeout(0.5)
        revision = await quick.put("/quick", b"1")
        kv = await backend.get("/quick")
        assert kv is not None and kv.mod_revision == revision
    finally:
        await backend.close()
