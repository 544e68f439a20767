"""One contract, two backends: whatever MemoryBackend does, EtcdBackend does against a real
etcd member, so code tested on memory behaves the same in a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.support.waiting import async_wait_until

from steppe.backend import Backend, Compare, Delete, Event, Get, Put
from steppe.errors import BackendError, NotFoundError, RevisionCompactedError


async def collect(it: AsyncIterator[list[Event]], revisions: int) -> list[list[Event]]:
    out: list[list[Event]] = []
    async with asyncio.timeout(20):
        async for batch in it:
            out.append(batch)
            if len(out) == revisions:
                break
    return out


async def test_put_get_bumps_version_and_keeps_create_revision(
    backend: Backend, prefix: str
) -> None:
    r1 = await backend.put(prefix + "a", b"1")
    r2 = await backend.put(prefix + "a", b"2")
    assert r2 > r1
    kv = await backend.get(prefix + "a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", r1, r2, 2)
    assert await backend.get(prefix + "missing") is None
    assert await backend.current_revision() >= r2


async def test_range_returns_prefix_in_key_order(backend: Backend, prefix: str) -> None:
    for key in ["b", "a/x", "c", "a"]:
        await backend.put(prefix + key, key.encode())
    await backend.put(prefix[:-1] + "x", b"outside")
    kvs, revision = await backend.range(prefix)
    assert [kv.key.removeprefix(prefix) for kv in kvs] == ["a", "a/x", "b", "c"]
    assert revision == await backend.current_revision()
    only_a, _ = await backend.range(prefix + "a")
    assert [kv.value for kv in only_a] == [b"a", b"a/x"]


async def test_txn_compares_pick_the_branch(backend: Backend, prefix: str) -> None:
    k = prefix + "k"
    created = await backend.txn([Compare.absent(k)], [Put(k, b"v1")], [])
    assert created.succeeded
    again = await backend.txn([Compare.absent(k)], [Put(k, b"lost")], [Get(k)])
    assert not again.succeeded
    assert [kv.value for kv in again.reads[0]] == [b"v1"]
    assert again.revision == created.revision

    kv = await backend.get(k)
    assert kv is not None
    cases = [
        (Compare.unchanged_since(k, kv.mod_revision), True),
        (Compare(k, "mod", "==", kv.mod_revision + 1), False),
        (Compare(k, "create", "==", kv.create_revision), True),
        (Compare(k, "version", "==", 1), True),
        (Compare(k, "version", ">", 1), False),
        (Compare(k, "value", "==", b"v1"), True),
        (Compare(k, "value", "!=", b"v1"), False),
        (Compare(k, "value", "<", b"v2"), True),
        (Compare(k, "lease", "==", 0), True),
        (Compare(k, "mod", "==", b"mistyped"), False),
    ]
    for compare, expected in cases:
        result = await backend.txn([compare], [Get(k)], [])
        assert result.succeeded is expected, compare


async def test_txn_applies_all_ops_at_one_revision(backend: Backend, prefix: str) -> None:
    await backend.put(prefix + "old", b"x")
    result = await backend.txn(
        [],
        [
            Put(prefix + "a", b"1"),
            Put(prefix + "b", b"2"),
            Delete(prefix + "old"),
            Get(prefix, prefix=True),
        ],
    )
    assert result.succeeded
    assert [kv.key for kv in result.reads[0]] == [prefix + "a", prefix + "b"]
    a, b = await backend.get(prefix + "a"), await backend.get(prefix + "b")
    assert a is not None and b is not None
    assert a.mod_revision == b.mod_revision == result.revision


async def test_delete_and_prefix_delete(backend: Backend, prefix: str) -> None:
    for key in ["d/1", "d/2", "e"]:
        await backend.put(prefix + key, b"x")
    await backend.delete(prefix + "e")
    assert await backend.get(prefix + "e") is None
    await backend.delete(prefix + "d/", prefix=True)
    assert (await backend.range(prefix))[0] == []


async def test_watch_replays_history_grouped_by_revision(backend: Backend, prefix: str) -> None:
    first = await backend.put(prefix + "a", b"1")
    await backend.txn([], [Put(prefix + "b", b"2"), Put(prefix + "c", b"3")])
    await backend.put(prefix[:-1] + "-other", b"not watched")
    last = await backend.delete(prefix + "a")
    batches = await collect(backend.watch(prefix, first), 3)
    assert [[(e.type, e.kv.key) for e in b] for b in batches] == [
        [("put", prefix + "a")],
        [("put", prefix + "b"), ("put", prefix + "c")],
        [("delete", prefix + "a")],
    ]
    assert batches[1][0].kv.value == b"2"
    assert batches[2][0].kv.mod_revision == last


async def test_watch_delivers_live_changes(backend: Backend, prefix: str) -> None:
    start = await backend.current_revision() + 1
    task = asyncio.create_task(collect(backend.watch(prefix, start), 2))
    await backend.put(prefix + "x", b"1")
    await backend.put(prefix + "x", b"2")
    batches = await task
    assert [b[0].kv.value for b in batches] == [b"1", b"2"]
    assert batches[1][0].kv.version == 2


async def test_watch_from_compacted_revision_fails(backend: Backend, prefix: str) -> None:
    old = await backend.put(prefix + "k", b"1")
    await backend.put(prefix + "k", b"2")
    latest = await backend.put(prefix + "k", b"3")
    await backend.compact(latest)
    with pytest.raises(RevisionCompactedError) as err:
        await collect(backend.watch(prefix, old), 1)
    assert err.value.requested == old
    still_there = await collect(backend.watch(prefix, latest), 1)
    assert still_there[0][0].kv.value == b"3"


async def test_lease_keepalive_and_revoke_deletes_keys(backend: Backend, prefix: str) -> None:
    lease = await backend.lease_grant(30)
    await backend.put(prefix + "owned", b"x", lease=lease)
    kv = await backend.get(prefix + "owned")
    assert kv is not None and kv.lease == lease
    assert await backend.lease_keepalive(lease) > 0
    await backend.lease_revoke(lease)
    assert await backend.get(prefix + "owned") is None
    with pytest.raises(NotFoundError):
        await backend.lease_keepalive(lease)
    await backend.lease_revoke(lease)
    with pytest.raises(NotFoundError):
        await backend.put(prefix + "orphan", b"x", lease=lease)


async def test_many_leases_renew_concurrently(backend: Backend) -> None:
    leases = await asyncio.gather(*(backend.lease_grant(30) for _ in range(20)))
    ttls = await asyncio.gather(*(backend.lease_keepalive(lease) for lease in leases))
    assert all(ttl > 0 for ttl in ttls)
    await asyncio.gather(*(backend.lease_revoke(lease) for lease in leases))


async def test_lease_expiry_deletes_keys(backend: Backend, prefix: str) -> None:
    lease = await backend.lease_grant(1)
    await backend.put(prefix + "ephemeral", b"x", lease=lease)

    async def gone() -> bool:
        return await backend.get(prefix + "ephemeral") is None

    await async_wait_until(gone, timeout=15, what="leased key to expire")
    with pytest.raises(NotFoundError):
        await backend.lease_keepalive(lease)


async def test_txn_size_limits_are_advertised(backend: Backend, prefix: str) -> None:
    ops = min(backend.max_txn_ops, 500)
    big = [Put(f"{prefix}{i:04}", b"v") for i in range(ops)]
    assert (await backend.txn([], big)).succeeded
    assert len((await backend.range(prefix))[0]) == ops
    if backend.max_txn_ops < 500:
        with pytest.raises(BackendError, match="too many operations"):
            await backend.txn([], [*big, Put(prefix + "one-too-many", b"v")])
