"""The in-process backend: for ``agent -dev`` and for deterministic tests.

It keeps a bounded window of history for watches, so a slow watcher sees the same
``RevisionCompactedError`` it would see from etcd. Time enters only through the
``clock`` parameter; :meth:`MemoryBackend.expire_leases` lets a test drive it.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence

from steppe.backend._base import (
    Backend,
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Op,
    Put,
    TxnResult,
    compare_holds,
)
from steppe.errors import NotFoundError, RevisionCompactedError


class MemoryBackend(Backend):
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        history: int = 100_000,
        lease_check_interval: float | None = 0.25,
    ) -> None:
        self._clock = clock
        self._history_limit = history
        self._data: dict[str, KeyValue] = {}
        self._sorted: list[str] | None = []
        """Keys in order, for prefix ranges; rebuilt on demand after keys come or go,
        because writes far outnumber ranges and an ordered insert costs O(n)."""
        self._revision = 0
        self._compacted = 0
        self._history: list[tuple[int, list[Event]]] = []
        self._changed = asyncio.Condition()
        self._leases: dict[int, tuple[float, float]] = {}  # id -> (ttl, deadline)
        self._lease_keys: dict[int, set[str]] = {}
        self._lease_ids = itertools.count(1)
        self._lease_check_interval = lease_check_interval
        self._lease_task: asyncio.Task[None] | None = None

    # reads ---------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        return self._data.get(key)

    def _prefix_keys(self, prefix: str) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        keys = self._sorted
        lo = bisect.bisect_left(keys, prefix)
        hi = lo
        while hi < len(keys) and keys[hi].startswith(prefix):
            hi += 1
        return keys[lo:hi]

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        return [self._data[k] for k in self._prefix_keys(prefix)], self._revision

    async def current_revision(self) -> int:
        return self._revision

    # writes --------------------------------------------------------------------------
    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self._ensure_lease_task()
        ok = all(compare_holds(self._data.get(c.key), c) for c in compares)
        ops = success if ok else failure
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise NotFoundError(f"lease {op.lease} not found")
        reads: list[list[KeyValue]] = []
        events: list[Event] = []
        revision = self._revision + 1
        for op in ops:
            if isinstance(op, Get):
                keys = self._prefix_keys(op.key) if op.prefix else [op.key]
                reads.append([self._data[k] for k in keys if k in self._data])
            elif isinstance(op, Put):
                events.append(self._put(op, revision))
            else:
                events.extend(self._delete(op, revision))
        if events:
            await self._commit(revision, events)
        return TxnResult(ok, self._revision, reads)

    def _put(self, op: Put, revision: int) -> Event:
        old = self._data.get(op.key)
        if old is None:
            self._sorted = None
        elif old.lease and old.lease != op.lease:
            self._lease_keys.get(old.lease, set()).discard(op.key)
        kv = KeyValue(
            key=op.key,
            value=op.value,
            create_revision=old.create_revision if old else revision,
            mod_revision=revision,
            version=(old.version + 1) if old else 1,
            lease=op.lease,
        )
        self._data[op.key] = kv
        if op.lease:
            self._lease_keys.setdefault(op.lease, set()).add(op.key)
        return Event("put", kv)

    def _delete(self, op: Delete, revision: int) -> list[Event]:
        keys = self._prefix_keys(op.key) if op.prefix else [op.key]
        events = []
        for key in keys:
            old = self._data.pop(key, None)
            if old is None:
                continue
            self._sorted = None
            if old.lease:
                self._lease_keys.get(old.lease, set()).discard(key)
            events.append(Event("delete", KeyValue(key, b"", old.create_revision, revision, 0)))
        return events

    async def _commit(self, revision: int, events: list[Event]) -> None:
        self._revision = revision
        self._history.append((revision, events))
        if len(self._history) > self._history_limit:
            drop = len(self._history) - self._history_limit
            self._compacted = self._history[drop - 1][0]
            del self._history[:drop]
        async with self._changed:
            self._changed.notify_all()

    async def compact(self, revision: int) -> None:
        idx = bisect.bisect_left(self._history, revision, key=lambda h: h[0])
        if idx:
            self._compacted = max(self._compacted, self._history[idx - 1][0])
            del self._history[:idx]

    # watches -------------------------------------------------------------------------
    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        next_rev = start_revision
        while True:
            if next_rev <= self._compacted:
                raise RevisionCompactedError(next_rev, self._compacted)
            idx = bisect.bisect_left(self._history, next_rev, key=lambda h: h[0])
            pending = self._history[idx:]
            for revision, events in pending:
                matching = [e for e in events if e.kv.key.startswith(prefix)]
                next_rev = revision + 1
                if matching:
                    yield matching
            if not pending:
                await self._wait_past(next_rev - 1)

    async def _wait_past(self, revision: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._revision > revision)

    # leases --------------------------------------------------------------------------
    async def lease_grant(self, ttl: float) -> int:
        self._ensure_lease_task()
        lease_id = next(self._lease_ids)
        self._leases[lease_id] = (ttl, self._clock() + ttl)
        return lease_id

    async def lease_keepalive(self, lease_id: int) -> float:
        if lease_id not in self._leases:
            raise NotFoundError(f"lease {lease_id} not found")
        ttl, _ = self._leases[lease_id]
        self._leases[lease_id] = (ttl, self._clock() + ttl)
        return ttl

    async def lease_revoke(self, lease_id: int) -> None:
        self._leases.pop(lease_id, None)
        keys = sorted(self._lease_keys.pop(lease_id, set()))
        if keys:
            await self.txn([], [Delete(k) for k in keys])

    async def expire_leases(self, now: float | None = None) -> list[int]:
        """Revokes every lease whose deadline has passed; returns their IDs."""
        now = self._clock() if now is None else now
        expired = [lid for lid, (_, deadline) in self._leases.items() if deadline <= now]
        for lease_id in expired:
            await self.lease_revoke(lease_id)
        return expired

    def _ensure_lease_task(self) -> None:
        if self._lease_task is None and self._lease_check_interval is not None:
            self._lease_task = asyncio.get_running_loop().create_task(self._expire_loop())

    async def _expire_loop(self) -> None:
        assert self._lease_check_interval is not None
        while True:
            await asyncio.sleep(self._lease_check_interval)
            await self.expire_leases()

    async def close(self) -> None:
        if self._lease_task is not None:
            self._lease_task.cancel()
            self._lease_task = None
