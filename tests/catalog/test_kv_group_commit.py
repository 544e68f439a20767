"""Plain KV PUTs that arrive together commit as one transaction, and under load the
batcher lingers for the writes on their way; in-process over the in-memory backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from steppe.backend import Compare, MemoryBackend, Op, TxnResult
from steppe.catalog import CATALOG_TABLES, catalog_root
from steppe.catalog._kv import KVWrite, KVWriter
from steppe.state import StateStore


class CountingBackend(MemoryBackend):
    def __init__(self, linger: float) -> None:
        super().__init__(lease_check_interval=None)
        self.batch_linger = linger
        self.writes: list[int] = []

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self.writes.append(len(success))
        return await super().txn(compares, success, failure)


async def _writer(linger: float) -> AsyncIterator[tuple[KVWriter, CountingBackend, StateStore]]:
    backend = CountingBackend(linger)
    store = StateStore(backend, CATALOG_TABLES, catalog_root("dc1"))
    await store.start()
    yield KVWriter(store, lambda key: False), backend, store
    await store.stop()


@pytest.fixture
async def lingering() -> AsyncIterator[tuple[KVWriter, CountingBackend, StateStore]]:
    async for made in _writer(linger=0.2):
        yield made


@pytest.fixture
async def forever() -> AsyncIterator[tuple[KVWriter, CountingBackend, StateStore]]:
    async for made in _writer(linger=3600):
        yield made


async def test_concurrent_puts_commit_together_and_each_lands(
    lingering: tuple[KVWriter, CountingBackend, StateStore],
) -> None:
    writer, backend, store = lingering
    writes = [KVWrite(f"k{i}", f"v{i}".encode()) for i in range(5)]
    assert await asyncio.gather(*(writer.put(w) for w in writes)) == [True] * 5
    assert backend.writes == [5]
    entries = [store.snapshot().get("kv", f"k{i}") for i in range(5)]
    assert [e.value for e in entries if e is not None] == [f"v{i}".encode() for i in range(5)]


async def test_under_load_writes_on_their_way_join_the_next_batch(
    lingering: tuple[KVWriter, CountingBackend, StateStore],
) -> None:
    writer, backend, _ = lingering
    await asyncio.gather(*(writer.put(KVWrite(f"k{i}", b"x")) for i in range(3)))
    first = asyncio.ensure_future(writer.put(KVWrite("a", b"1")))
    for _ in range(3):  # the batcher is now lingering; without it "a" would be committing
        await asyncio.sleep(0)
    second = asyncio.ensure_future(writer.put(KVWrite("b", b"2")))
    assert await asyncio.gather(first, second) == [True, True]
    assert backend.writes == [3, 2]


async def test_a_write_after_a_lone_one_does_not_linger(
    forever: tuple[KVWriter, CountingBackend, StateStore],
) -> None:
    writer, backend, _ = forever
    for key in ("a", "b", "c"):  # an hour's linger would hang here
        assert await asyncio.wait_for(writer.put(KVWrite(key, b"x")), 30)
    assert backend.writes == [1, 1, 1]
