"""The boundary with etcd's gRPC API: channels, protobuf translation, error mapping, retries.

We talk to etcd through the gRPC stubs aetcd ships rather than through ``aetcd.Client``,
because the client takes a single host (no failover across members), delivers watch
events one by one (losing the revision grouping the Backend contract promises), and
keeps no lease alive. The stubs give us the whole etcd v3 API with none of that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from aetcd import rpc

from steppe.backend._base import Compare, Delete, Get, KeyValue, Op, Put
from steppe.errors import BackendError, NotFoundError, ValidationError

T = TypeVar("T")

MAX_MESSAGE_BYTES = 512 * 1024 * 1024

REQUIRE_LEADER: tuple[tuple[str, str], ...] = (("hasleader", "true"),)
"""Makes a member without a leader refuse a request at once instead of letting it hang:
such a refusal is known not to have been applied, so even writes can be retried."""

_SAFE_TO_RETRY = ("no leader", "too many requests", "not capable", "unhealthy cluster")
"""etcd refusals that guarantee the request was not applied."""

_RESULTS = {
    "==": rpc.Compare.CompareResult.EQUAL,
    "!=": rpc.Compare.CompareResult.NOT_EQUAL,
    "<": rpc.Compare.CompareResult.LESS,
    ">": rpc.Compare.CompareResult.GREATER,
}
_TARGETS = {
    "version": (rpc.Compare.CompareTarget.VERSION, "version", int),
    "create": (rpc.Compare.CompareTarget.CREATE, "create_revision", int),
    "mod": (rpc.Compare.CompareTarget.MOD, "mod_revision", int),
    "value": (rpc.Compare.CompareTarget.VALUE, "value", bytes),
    "lease": (rpc.Compare.CompareTarget.LEASE, "lease", int),
}


def grpc_target(endpoints: Sequence[str]) -> str:
    """``["h1:p1", "http://h2:p2"]`` -> ``"ipv4:h1:p1,h2:p2"``: one channel over every member,
    so gRPC's pick-first moves to the next member when the current one dies."""
    if not endpoints:
        raise ValidationError("etcd endpoints: at least one host:port is needed")
    hosts = []
    for endpoint in endpoints:
        hostport = endpoint.split("://", 1)[-1].rstrip("/")
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValidationError(f"etcd endpoint {endpoint!r}: expected host:port")
        hosts.append(hostport)
    return "ipv4:" + ",".join(hosts)


def open_channel(endpoints: Sequence[str]) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.enable_retries", 0),
    ]
    return grpc.aio.insecure_channel(grpc_target(endpoints), options=options)


def key_bytes(key: str) -> bytes:
    return key.encode()


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end)."""
    if not prefix:
        return b"\0"
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\0"
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def range_bounds(key: str, prefix: bool) -> tuple[bytes, bytes]:
    raw = key_bytes(key)
    if not prefix:
        return raw, b""
    return (raw or b"\0"), prefix_end(raw)


def to_kv(kv: Any) -> KeyValue:
    return KeyValue(
        kv.key.decode(), kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease
    )


def to_compare(c: Compare) -> Any:
    target, field, kind = _TARGETS[c.target]
    key = key_bytes(c.key)
    if type(c.value) is not kind:
        # MemoryBackend treats a mistyped compare as false; etcd would reject it.
        return rpc.Compare(
            key=key,
            target=rpc.Compare.CompareTarget.VERSION,
            result=rpc.Compare.CompareResult.LESS,
            version=0,
        )
    msg = rpc.Compare(key=key, target=target, result=_RESULTS[c.op])
    setattr(msg, field, c.value)
    return msg


def to_request_op(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(
            request_put=rpc.PutRequest(key=key_bytes(op.key), value=op.value, lease=op.lease)
        )
    start, end = range_bounds(op.key, op.prefix)
    if isinstance(op, Delete):
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=start, range_end=end))
    if isinstance(op, Get):
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=start, range_end=end))
    raise TypeError(f"not a backend operation: {op!r}")


def is_write(ops: Sequence[Op]) -> bool:
    return any(not isinstance(op, Get) for op in ops)


def map_error(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """Turns a gRPC failure into the Steppe exception a caller can act on."""
    details = exc.details() or ""
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(f"etcd {what}: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendError(f"etcd {what}: timed out (a write may still have been applied)")
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendError(f"etcd {what}: unavailable ({details})")
    return BackendError(f"etcd {what}: {details or code.name}")


def retriable(exc: grpc.aio.AioRpcError, idempotent: bool) -> bool:
    code = exc.code()
    details = (exc.details() or "").lower()
    if any(reason in details for reason in _SAFE_TO_RETRY):
        return True
    if not idempotent:
        return False
    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or (
        "leader changed" in details
    )


async def call_with_retry(
    attempt: Callable[[float], Awaitable[T]],
    *,
    what: str,
    timeout: float,
    idempotent: bool,
    attempt_timeout: float | None = None,
) -> T:
    """Runs ``attempt(remaining_seconds)`` until it succeeds or ``timeout`` passes.

    Only failures known not to have changed anything are retried for writes; a write
    that broke mid-flight surfaces as :class:`BackendError`, since it may have committed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.02
    while True:
        remaining = deadline - loop.time()
        try:
            return await attempt(max(min(remaining, attempt_timeout or remaining), 0.001))
        except grpc.aio.AioRpcError as exc:
            if not retriable(exc, idempotent) or loop.time() + delay >= deadline:
                raise map_error(exc, what) from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
