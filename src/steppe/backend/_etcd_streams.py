"""etcd's two streaming APIs: watches that resume themselves, and lease renewals
multiplexed over one ``LeaseKeepAlive`` stream."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from aetcd import rpc

from steppe.backend._base import Event, KeyValue
from steppe.backend._etcd_rpc import REQUIRE_LEADER, map_error, range_bounds, to_kv
from steppe.errors import BackendError, NotFoundError, RevisionCompactedError

log = logging.getLogger(__name__)


_DELETE = rpc.Event.EventType.DELETE


def group_by_revision(events: Any) -> list[list[Event]]:
    groups: list[list[Event]] = []
    last = -1
    for ev in events:
        kv = ev.kv
        if ev.type == _DELETE:
            event = Event("delete", KeyValue(kv.key.decode(), b"", 0, kv.mod_revision, 0))
        else:
            event = Event("put", to_kv(kv))
        if kv.mod_revision != last:
            groups.append([])
            last = kv.mod_revision
        groups[-1].append(event)
    return groups


class _StreamBroken(Exception):
    """The watch stream ended for a reason that resuming elsewhere may cure."""


async def resuming_watch(
    stub: Any, prefix: str, start_revision: int, resume_timeout: float
) -> AsyncIterator[list[Event]]:
    """Watches ``prefix`` from ``start_revision``, reopening the stream after it breaks
    (member killed, leader lost) from the revision after the last one delivered, so the
    caller sees every revision exactly once, in order, whichever member serves it."""
    if start_revision < 1:
        raise RevisionCompactedError(start_revision, 0)
    key, range_end = range_bounds(prefix, True)
    loop = asyncio.get_running_loop()
    next_rev = start_revision
    broken_since: float | None = None
    delay = 0.02
    while True:
        call = stub.Watch(metadata=REQUIRE_LEADER, wait_for_ready=True)
        try:
            create = rpc.WatchCreateRequest(key=key, range_end=range_end, start_revision=next_rev)
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise _StreamBroken("stream closed")
                if resp.compact_revision:
                    raise RevisionCompactedError(next_rev, resp.compact_revision - 1)
                if resp.canceled:
                    raise _StreamBroken(resp.cancel_reason or "watch canceled")
                broken_since, delay = None, 0.02
                for group in group_by_revision(resp.events):
                    next_rev = group[0].kv.mod_revision + 1
                    yield group
        except (grpc.aio.AioRpcError, _StreamBroken) as exc:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
            ):
                raise map_error(exc, f"watch {prefix!r}") from exc
            now = loop.time()
            broken_since = broken_since or now
            if now - broken_since > resume_timeout:
                raise BackendError(
                    f"etcd watch {prefix!r}: could not resume from revision {next_rev} "
                    f"for {resume_timeout:g}s ({exc})"
                ) from exc
            log.debug("watch %r broken (%s); resuming from %d", prefix, exc, next_rev)
        finally:
            call.cancel()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


class LeaseKeepAlives:
    """Renews any number of leases over a single bidirectional stream.

    etcd answers keep-alives on one stream in the order it received them, each answer
    naming its lease, so a FIFO of waiters per lease is enough to pair them up.
    """

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[int, deque[asyncio.Future[int]]] = {}
        self._lock = asyncio.Lock()

    async def renew(self, lease_id: int, timeout: float) -> float:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(lease_id, deque()).append(fut)
        try:
            async with asyncio.timeout(timeout):
                async with self._lock:
                    call = await self._ensure_stream()
                    await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                ttl = await fut
        except TimeoutError as exc:
            self._forget(lease_id, fut)
            raise BackendError(f"etcd lease {lease_id:x} keep-alive: timed out") from exc
        except grpc.aio.AioRpcError as exc:
            self._forget(lease_id, fut)
            self._reset(exc)
            raise map_error(exc, f"lease {lease_id:x} keep-alive") from exc
        if ttl <= 0:
            raise NotFoundError(f"lease {lease_id:x} not found (expired or revoked)")
        return float(ttl)

    def _forget(self, lease_id: int, fut: asyncio.Future[int]) -> None:
        queue = self._waiters.get(lease_id)
        if queue and fut in queue:
            queue.remove(fut)

    async def _ensure_stream(self) -> Any:
        if self._call is None or self._call.done():
            self._call = self._stub.LeaseKeepAlive(metadata=REQUIRE_LEADER, wait_for_ready=True)
            self._reader = asyncio.get_running_loop().create_task(self._read(self._call))
        return self._call

    async def _read(self, call: Any) -> None:
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise BackendError("etcd lease keep-alive stream closed")
                queue = self._waiters.get(resp.ID)
                if queue:
                    fut = queue.popleft()
                    if not queue:
                        del self._waiters[resp.ID]
                    if not fut.done():
                        fut.set_result(resp.TTL)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if self._call is call:
                self._reset(map_error(exc, "lease keep-alive"))
        except BackendError as exc:
            if self._call is call:
                self._reset(exc)

    def _reset(self, exc: Exception) -> None:
        """Fails every pending renewal; the next one opens a fresh stream."""
        if self._call is not None:
            self._call.cancel()
        self._call = None
        waiters, self._waiters = self._waiters, {}
        error = exc if isinstance(exc, BackendError) else BackendError(str(exc))
        for queue in waiters.values():
            for fut in queue:
                if not fut.done():
                    fut.set_exception(error)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        self._reset(BackendError("etcd backend closed"))
