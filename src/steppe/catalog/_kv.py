"""KV writes as backend transactions with compares, so no write is decided on stale data.

Every write compares the key's mod revision with the one its decision was based on (the
cached snapshot first, then what the failed transaction read back), so a plain PUT keeps a
lock holder's ``Session`` and ``LockIndex`` even under concurrent writers, ``?cas`` is the
backend's own compare, and an acquire fails atomically if its session has just gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from steppe.backend import Compare, Delete, Get, KeyValue, Put
from steppe.catalog._tables import KV, SESSIONS
from steppe.errors import ConflictError, Problem, ValidationError
from steppe.state import StateStore
from steppe.structs import KVEntry, from_msgpack, to_msgpack

MAX_VALUE_BYTES = 512 * 1024
_RETRIES = 50


@dataclass(frozen=True, slots=True)
class KVWrite:
    key: str
    value: bytes | None
    flags: int = 0
    cas: int | None = None
    acquire: str = ""
    release: str = ""


def validate_write(w: KVWrite) -> None:
    if not w.key:
        raise ValidationError(Problem("key", "missing key name"))
    if w.value is not None and len(w.value) > MAX_VALUE_BYTES:
        raise ValidationError(
            Problem(w.key, f"value is {len(w.value)} bytes; the limit is {MAX_VALUE_BYTES}")
        )
    if w.acquire and w.release:
        raise ValidationError(Problem("query", "acquire and release cannot be combined"))
    if not 0 <= w.flags < 1 << 64:
        raise ValidationError(Problem("flags", "must be an unsigned 64-bit integer"))


def decode_kv(kv: KeyValue) -> KVEntry:
    entry = from_msgpack(kv.value, KVEntry)
    return msgspec.structs.replace(
        entry, create_index=kv.create_revision, modify_index=kv.mod_revision
    )


class KVWriter:
    """The write half of the KV store; ``lock_delayed`` says whether a key is in lock-delay."""

    def __init__(self, store: StateStore, lock_delayed: Callable[[str], bool]) -> None:
        self._store = store
        self._lock_delayed = lock_delayed
        self._prefix = store.root + KV.prefix
        self._batcher = _GroupCommit(self)

    def backend_key(self, key: str) -> str:
        return self._prefix + key

    def _cached(self, key: str) -> tuple[KVEntry | None, int]:
        snap = self._store.snapshot()
        return snap.get("kv", key), snap.revision_of("kv", key)

    async def _fresh(self, key: str) -> tuple[KVEntry | None, int]:
        kv = await self._store.backend.get(self.backend_key(key))
        return (decode_kv(kv), kv.mod_revision) if kv else (None, 0)

    def decide(self, w: KVWrite, cur: KVEntry | None) -> KVEntry | None:
        """The entry to store, or None when the write must be refused (lock held...)."""
        lock_index = cur.lock_index if cur else 0
        session = cur.session if cur else msgspec.UNSET
        if w.acquire:
            if cur is not None and cur.session and cur.session != w.acquire:
                return None
            if session != w.acquire:
                if self._lock_delayed(w.key):
                    return None
                lock_index += 1
            session = w.acquire
        elif w.release:
            if cur is None or cur.session != w.release:
                return None
            session = msgspec.UNSET
        return KVEntry(
            lock_index=lock_index, key=w.key, flags=w.flags, value=w.value, session=session
        )

    async def put(self, w: KVWrite) -> bool:
        """Applies a PUT; False when a CAS, acquire or release did not take."""
        validate_write(w)
        if w.cas is None and not w.acquire and not w.release:
            return await self._batcher.put(w)
        return await self.put_one(w)

    async def put_one(self, w: KVWrite) -> bool:
        cur, rev = self._cached(w.key)
        if w.cas is not None and rev != w.cas:
            cur, rev = await self._fresh(w.key)
            if rev != w.cas:
                return False
        session_key = self._store.key(SESSIONS.name, w.acquire) if w.acquire else ""
        if session_key and self._store.snapshot().get(SESSIONS.name, w.acquire) is None:
            raise ValidationError(Problem("acquire", f"invalid session {w.acquire!r}"))
        key = self.backend_key(w.key)
        for _ in range(_RETRIES):
            entry = self.decide(w, cur)
            if entry is None:
                return False
            compares = [Compare(key, "mod", "==", rev)]
            failure = [Get(key)]
            if session_key:
                compares.append(Compare(session_key, "create", ">", 0))
                failure.append(Get(session_key))
            result = await self._store.backend.txn(compares, [Put(key, to_msgpack(entry))], failure)
            if result.succeeded:
                await self._store.wait_for_revision(result.revision)
                return True
            if session_key and not result.reads[1]:
                raise ValidationError(Problem("acquire", f"invalid session {w.acquire!r}"))
            found = result.reads[0]
            cur, rev = (decode_kv(found[0]), found[0].mod_revision) if found else (None, 0)
            if w.cas is not None and rev != w.cas:
                return False
        raise ConflictError(f"kv {w.key!r}: too many concurrent writers, retry")

    async def delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        backend_key = self.backend_key(key)
        if recurse:
            result = await self._store.backend.txn([], [Delete(backend_key, prefix=True)])
        elif cas is not None:
            compare = Compare(backend_key, "mod", "==", cas)
            result = await self._store.backend.txn([compare], [Delete(backend_key)])
            if not result.succeeded:
                return not (await self._store.backend.get(backend_key))
        else:
            result = await self._store.backend.txn([], [Delete(backend_key)])
        await self._store.wait_for_revision(result.revision)
        return True


class _GroupCommit:
    """Plain PUTs that arrive together commit as one backend transaction (group commit).

    Each write still compares its own key's revision; if any compare fails the batch is
    retried write by write, so batching never changes an outcome, only the cost: one
    transaction, one watch event and one cache update for up to ``max_batch`` writes.

    Under load (the last batch held more than one write) it lingers the backend's
    ``batch_linger`` before taking the next batch, for the writes whose clients are just
    now reading the previous answers. After a lone write, the next one commits at once.
    """

    def __init__(self, writer: KVWriter) -> None:
        self._writer = writer
        self._queue: list[tuple[KVWrite, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None
        backend = writer._store.backend
        self._max_ops = max(1, min(128, backend.max_txn_ops))
        self._max_bytes = backend.max_txn_bytes // 2
        self._linger = backend.batch_linger
        self._last_batch = 0

    async def put(self, w: KVWrite) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((w, fut))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_all())
        return await fut

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                if self._last_batch > 1 and self._linger:
                    await asyncio.sleep(self._linger)
                batch: list[tuple[KVWrite, asyncio.Future[bool]]] = []
                seen: set[str] = set()
                size = 0
                rest = []
                for item in self._queue:
                    w = item[0]
                    if w.key in seen or len(batch) >= self._max_ops or size > self._max_bytes:
                        rest.append(item)
                        continue
                    seen.add(w.key)
                    size += len(w.key) + len(w.value or b"") + 64
                    batch.append(item)
                self._queue = rest
                self._last_batch = len(batch)
                await self._commit(batch)
        finally:
            self._task = None

    async def _commit(self, batch: list[tuple[KVWrite, asyncio.Future[bool]]]) -> None:
        writer = self._writer
        try:
            snap = writer._store.snapshot()
            rows = snap.table(KV.name).rows
            compares, ops = [], []
            for w, _ in batch:
                entry = writer.decide(w, rows.get(w.key))
                assert entry is not None
                key = writer.backend_key(w.key)
                compares.append(Compare(key, "mod", "==", snap.revision_of(KV.name, w.key)))
                ops.append(Put(key, to_msgpack(entry)))
            result = await writer._store.backend.txn(compares, ops)
            if result.succeeded:
                await writer._store.wait_for_revision(result.revision)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(True)
                return
            outcomes = await asyncio.gather(
                *(writer.put_one(w) for w, _ in batch), return_exceptions=True
            )
            for (_, fut), outcome in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
