"""One persistent, multiplexed connection to one RPC server.

Calls share the connection and are matched to answers by request id, so a blocking
query and a heartbeat travel side by side. A lost connection fails every call in
flight with :class:`UnreachableError` and the next call dials again; nothing is
retried here, because only the caller knows whether a call is safe to repeat and
where else it could go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl as ssl_module
from typing import Any, TypeVar, overload

import msgspec

from steppe.errors import Problem, SteppeError, ValidationError
from steppe.rpc._method import Method
from steppe.rpc._wire import (
    CONNECTION_ID,
    MAX_FRAME,
    ProtocolError,
    RawResponse,
    Request,
    UnreachableError,
    decode_response,
    encode_frame,
    error_from_info,
    read_frame,
)

log = logging.getLogger(__name__)
R = TypeVar("R")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(Problem("address", f"{address!r} is not host:port"))
    return host, int(port)


def with_default_port(address: str, port: int) -> str:
    """Nomad's ``client.servers`` accepts ``host`` alone, meaning its RPC port 4647."""
    bare = address.strip()
    if bare.startswith("[") and bare.endswith("]"):
        return f"{bare}:{port}"
    if ":" not in bare:
        return f"{bare}:{port}"
    if bare.count(":") > 1 and not bare.startswith("["):  # a bare IPv6 address
        return f"[{bare}]:{port}"
    parse_address(bare)
    return bare


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[RawResponse]] = {}
        self.write_lock = asyncio.Lock()
        self.closed = False
        self.reader_task: asyncio.Task[None] | None = None

    def fail(self, exc: SteppeError) -> None:
        self.closed = True
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self.pending.clear()
        self.writer.close()


class RPCClient:
    """Calls ``Method``\\ s on the server at ``address``; ``timeout`` is the default
    deadline of a call (connecting included), overridable per call."""

    def __init__(
        self,
        address: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self._conn: _Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._ids = itertools.count(CONNECTION_ID + 1)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    @overload
    async def call(self, method: Method[R], *args: Any, timeout: float | None = None) -> R: ...

    @overload
    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any: ...

    async def call(
        self, method: Method[Any] | str, *args: Any, timeout: float | None = None
    ) -> Any:
        """Sends one call and waits for its answer. A server-side error comes back as the
        same exception type; no answer within the deadline is an UnreachableError."""
        name = method if isinstance(method, str) else method.name
        request_id = next(self._ids)
        frame = encode_frame(Request(request_id, name, args), self.max_frame, f"{name} request")
        deadline = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(deadline):
                response = await self._exchange(request_id, frame)
        except TimeoutError:
            # a server that cannot answer in time is treated as gone: the connection may
            # be half-open after a machine died, and only a fresh dial will tell
            self._drop(UnreachableError(f"{self.address}: no answer to {name} in {deadline}s"))
            raise UnreachableError(f"{self.address}: no answer to {name} in {deadline}s") from None
        if response.error is not None:
            raise error_from_info(response.error, self.address)
        raw = response.ok or b"\xc0"
        try:
            if isinstance(method, str):
                return msgspec.msgpack.decode(raw)
            return method.decode_result(raw)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"{self.address}: malformed answer to {name}: {exc}") from exc

    async def _exchange(self, request_id: int, frame: bytes) -> RawResponse:
        conn = await self._connection()
        fut: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = fut
        try:
            async with conn.write_lock:
                conn.writer.write(frame)
                await conn.writer.drain()
            return await fut
        except (ConnectionError, OSError) as exc:
            err = UnreachableError(f"connection to {self.address} lost: {exc}")
            conn.fail(err)
            raise err from exc
        finally:
            conn.pending.pop(request_id, None)

    async def _connection(self) -> _Connection:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await asyncio.open_connection(
                        self.host,
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.server_hostname if self.ssl else None,
                        limit=2**16,
                    )
            except (OSError, TimeoutError) as exc:
                why = str(exc) or "connection timed out"
                raise UnreachableError(f"cannot connect to {self.address}: {why}") from exc
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            conn = _Connection(reader, writer)
            conn.reader_task = asyncio.create_task(self._read_loop(conn))
            self._conn = conn
            return conn

    async def _read_loop(self, conn: _Connection) -> None:
        reason: SteppeError = UnreachableError(f"{self.address} closed the connection")
        try:
            while True:
                body = await read_frame(conn.reader, self.max_frame, f"answer from {self.address}")
                if body is None:
                    break
                response = decode_response(body)
                if response.id == CONNECTION_ID:
                    if response.error is not None:
                        reason = error_from_info(response.error, self.address)
                    break
                fut = conn.pending.pop(response.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(response)
        except SteppeError as exc:
            reason = exc
        except (ConnectionError, OSError) as exc:
            reason = UnreachableError(f"connection to {self.address} lost: {exc}")
        except asyncio.CancelledError:
            reason = UnreachableError(f"connection to {self.address} closed")
            raise
        finally:
            conn.fail(reason)

    def _drop(self, reason: SteppeError) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(reason)
            if conn.reader_task is not None:
                conn.reader_task.cancel()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.fail(UnreachableError(f"client for {self.address} closed"))
        if conn.reader_task is not None:
            conn.reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.reader_task
        with contextlib.suppress(Exception):
            await conn.writer.wait_closed()
