"""Serving an allow-listed handler object over framed msgpack.

Each request runs in its own task, so a blocking query in flight never delays a
heartbeat on the same connection; responses are written whole, in completion order.
A connection that sends garbage is told why and closed; the server and every other
connection carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from typing import Any

import msgspec

from steppe.errors import Problem, SteppeError, ValidationError
from steppe.rpc._method import Handlers, Method
from steppe.rpc._wire import (
    CONNECTION_ID,
    MAX_FRAME,
    ErrorInfo,
    FrameTooLargeError,
    ProtocolError,
    RawRequest,
    Response,
    decode_request,
    encode_frame,
    error_info,
    read_frame,
)

log = logging.getLogger(__name__)
_NO_ARGS = b"\x90"
MAX_IN_FLIGHT = 256
"""Requests one connection may have running at once; beyond it, reading pauses."""


class _Connection:
    def __init__(
        self,
        server: RPCServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = _peer_name(writer)
        self._write_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()

    def abort(self) -> None:
        """Drops the connection at once; the read loop then ends as at end of stream."""
        for task in self._tasks:
            task.cancel()
        self.writer.transport.abort()

    async def serve(self) -> None:
        try:
            await self._read_loop()
        except (FrameTooLargeError, ProtocolError) as exc:
            log.warning("RPC connection from %s dropped: %s", self.peer, exc)
            await self._send_close_reason(exc)
        except (ConnectionError, ssl_module.SSLError, OSError) as exc:
            log.debug("RPC connection from %s failed: %s", self.peer, exc)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _read_loop(self) -> None:
        limit = self.server.max_frame
        while True:
            body = await read_frame(self.reader, limit, f"request frame from {self.peer}")
            if body is None:
                return
            request = decode_request(body)
            if request.id == CONNECTION_ID:
                raise ProtocolError(f"request id {CONNECTION_ID} is reserved")
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(request))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, request: RawRequest) -> None:
        try:
            result = await self.server.dispatch(request)
            frame = encode_frame(Response(request.id, ok=result), self.server.max_frame, "response")
        except SteppeError as exc:
            frame = self._error_frame(request.id, error_info(exc))
        except Exception as exc:
            log.exception("RPC %s from %s failed unexpectedly", request.method, self.peer)
            info = ErrorInfo("internal", f"internal error in {request.method}: {exc!r}")
            frame = self._error_frame(request.id, info)
        await self._write(frame)

    def _error_frame(self, request_id: int, info: ErrorInfo) -> bytes:
        return encode_frame(Response(request_id, error=info), self.server.max_frame, "error")

    async def _write(self, frame: bytes) -> None:
        async with self._write_lock:
            try:
                self.writer.write(frame)
                await self.writer.drain()
            except (ConnectionError, OSError) as exc:
                log.debug("RPC answer to %s lost: %s", self.peer, exc)

    async def _send_close_reason(self, exc: SteppeError) -> None:
        with contextlib.suppress(Exception):
            await self._write(self._error_frame(CONNECTION_ID, error_info(exc)))


class RPCServer:
    """Serves ``handlers.rpc_methods`` on ``host:port`` (port 0 picks a free one; see
    :attr:`address`), over TLS when ``ssl`` is given."""

    def __init__(
        self,
        handlers: Handlers,
        host: str = "127.0.0.1",
        port: int = 4647,
        *,
        ssl: ssl_module.SSLContext | None = None,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.handlers = handlers
        self.methods: dict[str, Method[Any]] = dict(handlers.rpc_methods)
        self.host = host
        self.port = port
        self.ssl = ssl
        self.max_frame = max_frame
        self._server: asyncio.Server | None = None
        self._connections: dict[_Connection, asyncio.Task[Any]] = {}
        self._in_flight = 0

    @property
    def address(self) -> str:
        """``host:port`` to reach this server at; once started, the port actually bound
        (port 0 picks one), which a restart of this object binds again."""
        return _join(self.host, self.port)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def in_flight(self) -> int:
        """Requests being handled right now, over all connections."""
        return self._in_flight

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, ssl=self.ssl, limit=2**16
            )
        except OSError as exc:
            raise SteppeError(
                f"cannot listen for RPC on {_join(self.host, self.port)}: {exc}"
            ) from exc
        if self._server.sockets:
            self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("RPC listening on %s%s", self.address, " (TLS)" if self.ssl else "")

    async def stop(self) -> None:
        """Stops listening and drops every connection; calls in flight are abandoned
        (their clients see the connection close and fail over)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        await asyncio.gather(*self._connections.values(), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RPCServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Runs in the task asyncio made for the connection; stop() aborts the transport
        rather than cancelling this task, which asyncio would report as an error."""
        conn = _Connection(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn] = task
        try:
            await conn.serve()
        finally:
            del self._connections[conn]

    async def dispatch(self, request: RawRequest) -> Any:
        self._in_flight += 1
        try:
            return await self._dispatch(request)
        finally:
            self._in_flight -= 1

    async def _dispatch(self, request: RawRequest) -> Any:
        method = self.methods.get(request.method)
        if method is None:
            known = ", ".join(sorted(self.methods))
            raise ValidationError(
                Problem("method", f"unknown RPC method {request.method!r} (known: {known})")
            )
        try:
            args = method.decode_args(request.args or _NO_ARGS)
        except msgspec.DecodeError as exc:
            where = f"{request.method} arguments"
            raise ValidationError(Problem(where, str(exc).replace("`", "'"))) from exc
        handler = getattr(self.handlers, method.name)
        return await handler(*args)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return _join(str(peer[0]), int(peer[1]))
    return str(peer)
