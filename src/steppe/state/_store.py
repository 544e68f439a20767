"""The state store: typed tables cached in memory, fed by one watch on the backend.

Every server keeps a full copy. Reads come from :meth:`StateStore.snapshot`; writes are
backend transactions (:class:`Txn`, built by the pure functions in ``_writes``) and are
visible to the writer's next snapshot as soon as :meth:`StateStore.commit` returns,
because ``commit`` waits until the watch has brought the cache to the write's revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import immutables
import msgspec

from steppe.backend import Backend, Compare, Event, KeyValue, Op, Put
from steppe.errors import BackendError, ConflictError, RevisionCompactedError
from steppe.state._snapshot import StateSnapshot, TableData
from steppe.state._tables import TableSpec
from steppe.structs import from_msgpack

log = logging.getLogger(__name__)
MAX_WRITTEN_HINTS = 100_000
_EMPTY: immutables.Map[str, Any] = immutables.Map()


@dataclass(frozen=True)
class Txn:
    """One intent as one backend transaction: all compares must hold, then all ops apply."""

    compares: tuple[Compare, ...]
    ops: tuple[Op, ...]
    what: str = "write"
    rows: tuple[tuple[str, Any], ...] = ()
    """(key, struct) for values this transaction puts: the writer's own cache can take
    them as they are instead of decoding the bytes again when the watch echoes them."""


class IndexTracker:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _Table:
    """The mutable holder of one table's current maps; only the watch loop writes it."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.data = self.empty()
        self.changed = asyncio.Event()
        self.trackers: list[IndexTracker] = []
        fields = spec.type.__struct_fields__ if spec.stamp_indexes else ()
        self._modify_stamps = [f for f in ("job_modify_index", "alloc_modify_index") if f in fields]

    def empty(self) -> TableData:
        return TableData(
            immutables.Map(),
            {name: immutables.Map() for name in self.spec.indexes},
            immutables.Map(),
            0,
            {name: immutables.Map() for name in self.spec.summaries},
        )

    def apply(self, events: Sequence[tuple[str, Event, Any]], revision: int) -> None:
        rows = self.data.rows.mutate()
        revisions = self.data.revisions.mutate()
        indexes = {name: idx.mutate() for name, idx in self.data.indexes.items()}
        summaries = {name: totals.mutate() for name, totals in self.data.summaries.items()}
        for row_id, event, known in events:
            old = rows.get(row_id)
            if old is not None:
                self._unindex(indexes, row_id, old)
                self._uncount(summaries, old)
            if event.type == "delete":
                rows.pop(row_id, None)
                revisions.pop(row_id, None)
                continue
            try:
                row = self._decode(event.kv, known)
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                # one unreadable row (written by a newer or broken agent) must not stop
                # the cache from following everything else
                log.error("state: skipping unreadable %s row %r: %s", self.spec.name, row_id, exc)
                continue
            rows[row_id] = row
            revisions[row_id] = event.kv.mod_revision
            self._index(indexes, row_id, row)
            self._count(summaries, row)
        self.data = TableData(
            rows.finish(),
            {name: idx.finish() for name, idx in indexes.items()},
            revisions.finish(),
            revision,
            {name: totals.finish() for name, totals in summaries.items()},
        )
        for tracker in self.trackers:
            tracker.index = max(tracker.index, revision)
        self.changed.set()
        self.changed = asyncio.Event()

    def _decode(self, kv: KeyValue, known: Any = None) -> Any:
        if not self.spec.stamp_indexes:
            return known if known is not None else from_msgpack(kv.value, self.spec.type)
        stamps = [("create_index", kv.create_revision), ("modify_index", kv.mod_revision)]
        stamps += [(name, kv.mod_revision) for name in self._modify_stamps]
        if known is not None:
            # the writer's own object may be shared: stamp a copy
            return msgspec.structs.replace(known, **dict(stamps))
        row = from_msgpack(kv.value, self.spec.type)
        # freshly decoded and not yet seen by anyone: stamping in place saves a copy of
        # every row every server follows
        for name, value in stamps:
            msgspec.structs.force_setattr(row, name, value)
        return row

    def _index(self, indexes: dict[str, Any], row_id: str, row: Any) -> None:
        for name, fn in self.spec.indexes.items():
            key = fn(row)
            if key is None:
                continue
            idx = indexes[name]
            members: immutables.Map[str, Any] = idx.get(key, _EMPTY)
            idx[key] = members.set(row_id, row)

    def _count(self, summaries: dict[str, Any], row: Any) -> None:
        for name, summary in self.spec.summaries.items():
            key = summary.key(row)
            if key is not None:
                totals = summaries[name]
                totals[key] = summary.add(totals.get(key, summary.empty), row)

    def _uncount(self, summaries: dict[str, Any], row: Any) -> None:
        for name, summary in self.spec.summaries.items():
            key = summary.key(row)
            totals = summaries[name]
            if key is None or key not in totals:
                continue
            total = summary.remove(totals[key], row)
            if total == summary.empty:
                del totals[key]
            else:
                totals[key] = total

    def _unindex(self, indexes: dict[str, Any], row_id: str, row: Any) -> None:
        for name, fn in self.spec.indexes.items():
            key = fn(row)
            if key is None:
                continue
            idx = indexes[name]
            members: immutables.Map[str, Any] | None = idx.get(key)
            if members is None:
                continue
            members = members.delete(row_id) if row_id in members else members
            if members:
                idx[key] = members
            else:
                del idx[key]


class StateStore:
    def __init__(
        self, backend: Backend, tables: Iterable[TableSpec], root: str = "/steppe/"
    ) -> None:
        self.backend = backend
        self.root = root
        self._tables = {spec.name: _Table(spec) for spec in tables}
        self._prefixes = sorted(
            ((root + t.spec.prefix, t) for t in self._tables.values()),
            key=lambda p: -len(p[0]),
        )
        self._revision = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        """(revision, arrival, future) heap: who waits for the cache to reach what."""
        self._arrivals = itertools.count()
        self._watch_task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._written: dict[str, tuple[bytes, Any]] = {}

    # lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Loads everything, then follows the backend's changes in the background."""
        revision = await self._relist()
        self._watch_task = asyncio.get_running_loop().create_task(self._follow(revision + 1))

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
            self._watch_task = None

    async def _relist(self) -> int:
        kvs, revision = await self.backend.range(self.root)
        for table in self._tables.values():
            table.data = table.empty()
        grouped: dict[str, list[tuple[str, Event, Any]]] = {}
        for kv in kvs:
            routed = self._route(kv.key)
            if routed is not None:
                table, row_id = routed
                grouped.setdefault(table.spec.name, []).append((row_id, Event("put", kv), None))
        for name, table in self._tables.items():
            events = grouped.get(name, [])
            newest = max((e.kv.mod_revision for _, e, _ in events), default=0)
            table.apply(events, newest)
            for tracker in table.trackers:  # deletions during a gap leave no row to date
                tracker.index = max(tracker.index, revision)
        self._advance(revision)
        return revision

    async def _follow(self, start: int) -> None:
        while True:
            try:
                async for events in self.backend.watch(self.root, start):
                    self._apply(events)
                    start = events[-1].kv.mod_revision + 1
                    self._advance(start - 1)
                return
            except RevisionCompactedError:
                log.warning("state watch fell behind compaction; re-listing")
                start = await self._relist() + 1
            except asyncio.CancelledError:
                raise
            except BackendError as exc:
                log.warning("state watch broke (%s); resuming from %d", exc, start)
                await asyncio.sleep(0.2)
            except Exception as exc:
                self._failure = exc
                log.exception("state watch failed")
                raise

    def _route(self, key: str) -> tuple[_Table, str] | None:
        for prefix, table in self._prefixes:
            if key.startswith(prefix):
                return table, key[len(prefix) :]
        return None

    def _apply(self, events: list[Event]) -> None:
        by_table: dict[str, list[tuple[str, Event, Any]]] = {}
        revision = 0
        for event in events:
            revision = max(revision, event.kv.mod_revision)
            routed = self._route(event.kv.key)
            if routed is not None:
                table, row_id = routed
                known = None
                hint = self._written.pop(event.kv.key, None)
                if hint is not None and event.type == "put" and hint[0] == event.kv.value:
                    known = hint[1]
                by_table.setdefault(table.spec.name, []).append((row_id, event, known))
        for name, table_events in by_table.items():
            self._tables[name].apply(table_events, revision)

    def _advance(self, revision: int) -> None:
        """Wakes exactly the waiters the new revision satisfies: with many writers
        waiting (a burst of node registrations), waking them all on every revision
        cost a server a fifth of its time."""
        if revision > self._revision:
            self._revision = revision
            while self._waiters and self._waiters[0][0] <= revision:
                _, _, waiter = heapq.heappop(self._waiters)
                if not waiter.done():
                    waiter.set_result(None)

    # reads ---------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._revision

    def table_index(self, *names: str) -> int:
        """What ``snapshot().table_index(*names)`` says, without taking a snapshot."""
        return max((self._tables[n].data.index for n in names), default=0)

    def index_tracker(self, *names: str) -> IndexTracker:
        """An object whose ``index`` follows ``table_index(*names)``, for callers that ask
        on every packet (the DNS answer cache): reading it is one attribute lookup."""
        tracker = IndexTracker(self.table_index(*names))
        for name in names:
            self._tables[name].trackers.append(tracker)
        return tracker

    def snapshot(self) -> StateSnapshot:
        return StateSnapshot({n: t.data for n, t in self._tables.items()}, self._revision)

    async def wait_for_revision(self, revision: int, timeout: float | None = None) -> bool:
        """Waits until the cache reflects ``revision``; False on timeout."""
        if self._revision >= revision:
            return True
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (revision, next(self._arrivals), waiter))
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        return True

    async def consistent_snapshot(self, timeout: float = 10.0) -> StateSnapshot:
        """A snapshot at least as new as the backend's quorum revision (``?consistent``)."""
        revision = await self.backend.current_revision()
        if not await self.wait_for_revision(revision, timeout):
            raise BackendError(f"state cache did not reach revision {revision} in {timeout}s")
        return self.snapshot()

    async def block(self, tables: Sequence[str], min_index: int, timeout: float) -> StateSnapshot:
        """A blocking query: returns once one of ``tables`` changed past ``min_index``,
        or after ``timeout`` seconds with the current state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            snap = self.snapshot()
            if snap.table_index(*tables) > min_index:
                return snap
            remaining = deadline - loop.time()
            if remaining <= 0:
                return snap
            waits = [asyncio.ensure_future(self._tables[t].changed.wait()) for t in tables]
            try:
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    # writes --------------------------------------------------------------------------
    async def commit(self, txn: Txn) -> int:
        """Applies one transaction; raises ConflictError if a compare failed.

        Returns the revision of the write, once the cache reflects it."""
        if txn.rows:
            if len(self._written) > MAX_WRITTEN_HINTS:
                self._written.clear()
            values = {op.key: op.value for op in txn.ops if isinstance(op, Put)}
            for key, row in txn.rows:
                if key in values:
                    self._written[key] = (values[key], row)
        try:
            result = await self.backend.txn(txn.compares, txn.ops)
        except BaseException:
            self._forget(txn)
            raise
        if not result.succeeded:
            self._forget(txn)
            raise ConflictError(f"{txn.what}: changed concurrently, retry")
        await self.wait_for_revision(result.revision)
        return result.revision

    def _forget(self, txn: Txn) -> None:
        for key, _ in txn.rows:
            self._written.pop(key, None)

    async def try_commit(self, txn: Txn) -> int | None:
        """Like :meth:`commit`, but a failed compare returns None instead of raising."""
        try:
            return await self.commit(txn)
        except ConflictError:
            return None

    def key(self, table: str, row_id: str) -> str:
        return self.root + self._tables[table].spec.prefix + row_id
