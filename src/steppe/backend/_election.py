"""Leader election on nothing but the Backend primitives (transactions, leases, watches),
so it behaves the same on MemoryBackend and on etcd.

The recipe is etcd's own: every candidate writes a key under the election prefix bound
to its lease; the key with the lowest ``create_revision`` is the leader. Candidates wait
for deletes rather than polling, and the queue is fair: first come, first served. A
leader whose lease lapses (its process stalled, its network cut) loses its key, so at
most one leader holds a live key at any revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from steppe.backend._base import Backend, Compare, Get, KeyValue, Put
from steppe.errors import BackendError, NotFoundError, RevisionCompactedError

log = logging.getLogger(__name__)


async def keep_alive(
    backend: Backend,
    lease_id: int,
    ttl: float,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Renews ``lease_id`` every third of its TTL until cancelled.

    Returns (instead of looping on) once the lease is gone, or once renewals have
    failed for a whole TTL: past that point the backend may have expired it, and the
    holder must act as if it had.
    """
    last_ok = clock()
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            await asyncio.wait_for(backend.lease_keepalive(lease_id), timeout=ttl / 3)
            last_ok = clock()
        except NotFoundError:
            return
        except (BackendError, TimeoutError) as exc:
            log.warning("lease %x keep-alive failed: %s", lease_id, exc)
            if clock() - last_ok >= ttl:
                return


def _leader_of(kvs: dict[str, KeyValue]) -> KeyValue | None:
    return min(kvs.values(), key=lambda kv: kv.create_revision, default=None)


class Election:
    """One candidate in the election called ``name``. Use one instance per campaign."""

    def __init__(
        self,
        backend: Backend,
        name: str,
        *,
        ttl: float = 5.0,
        prefix: str = "/steppe/election/",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._prefix = f"{prefix}{name}/"
        self._ttl = ttl
        self._clock = clock
        self.lease_id: int | None = None
        self._key: str | None = None
        self._fence: Compare | None = None
        self._lost = asyncio.Event()
        self._leader = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def is_leader(self) -> bool:
        return self._leader and not self._lost.is_set()

    @property
    def fence(self) -> Compare:
        """Holds exactly while this candidate leads: its key, the oldest, still exists.

        A write that carries it cannot commit once leadership has passed on, however
        late this candidate learns of that (the next leader waits for this key to go)."""
        if self._fence is None:
            raise RuntimeError("fence asked of a candidate that never led")
        return self._fence

    async def campaign(self, value: str) -> None:
        """Returns once this candidate is the leader; cancel it to stop waiting."""
        if self.lease_id is not None:
            raise RuntimeError("campaign() called twice on one Election")
        self.lease_id = lease_id = await self._backend.lease_grant(self._ttl)
        self._key = key = f"{self._prefix}{lease_id:016x}"
        self._spawn(self._keep_alive(lease_id))
        try:
            await self._backend.txn(
                [Compare.absent(key)], [Put(key, value.encode(), lease_id)], [Get(key)]
            )
            created = await self._wait_for_turn(key)
        except BaseException:
            await self.resign()
            raise
        self._fence = Compare(key, "create", "==", created)
        self._leader = True
        self._spawn(self._watch_own_key(key))

    async def _wait_for_turn(self, key: str) -> int:
        """Returns the create revision of our key once it is the oldest."""
        while True:
            kvs, revision = await self._backend.range(self._prefix)
            mine = next((kv for kv in kvs if kv.key == key), None)
            if mine is None or self._lost.is_set():
                raise BackendError(f"election {self._prefix!r}: lease lost while campaigning")
            if min(kv.create_revision for kv in kvs) == mine.create_revision:
                return mine.create_revision
            await self._until_delete(revision + 1)

    async def _until_delete(self, start_revision: int) -> None:
        """Waits for any delete under the prefix (a candidate ahead may have left) or for
        our own lease to be lost."""

        async def deleted() -> None:
            with contextlib.suppress(RevisionCompactedError):
                async for events in self._backend.watch(self._prefix, start_revision):
                    if any(e.type == "delete" for e in events):
                        return

        waiters = [asyncio.ensure_future(deleted()), asyncio.ensure_future(self._lost.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        for waiter in waiters:
            if waiter.done() and not waiter.cancelled() and waiter.exception():
                raise waiter.exception()  # type: ignore[misc]

    async def _keep_alive(self, lease_id: int) -> None:
        await keep_alive(self._backend, lease_id, self._ttl, clock=self._clock)
        self._lose("lease lost")

    async def _watch_own_key(self, key: str) -> None:
        kv = await self._backend.get(key)
        if kv is None:
            self._lose("key gone")
            return
        try:
            async for events in self._backend.watch(key, kv.mod_revision + 1):
                if any(e.type == "delete" and e.kv.key == key for e in events):
                    break
        except BackendError as exc:
            log.warning("election %r: lost track of own key: %s", self._prefix, exc)
        self._lose("key deleted")

    def _lose(self, why: str) -> None:
        if not self._lost.is_set():
            log.info("election %r: %s", self._prefix, why)
            self._lost.set()

    async def wait_lost(self) -> None:
        """Returns when this candidate is no longer (or can no longer count on being) the
        leader: its key was deleted, its lease lapsed, renewals failed for a TTL, or it
        resigned."""
        await self._lost.wait()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    async def resign(self) -> None:
        """Steps down (or out of the queue) at once, so the next candidate takes over
        without waiting for the lease to expire."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._leader = False
        self._lost.set()
        if self.lease_id is not None:
            with contextlib.suppress(BackendError):
                await self._backend.lease_revoke(self.lease_id)

    async def leader(self) -> str | None:
        kvs, _ = await self._backend.range(self._prefix)
        current = _leader_of({kv.key: kv for kv in kvs})
        return current.value.decode() if current else None

    async def observe(self) -> AsyncIterator[str | None]:
        """Yields the current leader's value, then each change of leader (``None``: no
        leader). Survives compaction by re-listing."""
        last: object = object()
        while True:
            kvs, revision = await self._backend.range(self._prefix)
            state = {kv.key: kv for kv in kvs}
            current = _leader_of(state)
            value = current.value.decode() if current else None
            if value != last:
                last = value
                yield value
            try:
                async for events in self._backend.watch(self._prefix, revision + 1):
                    for event in events:
                        if event.type == "put":
                            state[event.kv.key] = event.kv
                        else:
                            state.pop(event.kv.key, None)
                    current = _leader_of(state)
                    value = current.value.decode() if current else None
                    if value != last:
                        last = value
                        yield value
            except RevisionCompactedError:
                continue
