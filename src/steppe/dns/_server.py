"""The DNS listener: one UDP endpoint and one TCP server on the same port, any asyncio loop.

The UDP handler looks the packet up in the responder's hot table before anything else, so
a repeated question costs one dict lookup and one ``sendto``; everything else goes through
the responder, and names outside the domain go to the recursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from typing import Any, cast

from steppe.dns._config import DNSConfig
from steppe.dns._responder import Forward, Responder
from steppe.dns._view import CatalogView
from steppe.errors import SteppeError

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0
_RCVBUF = 4 * 1024 * 1024


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self._responder = server.responder
        self._current_index = server.responder.view.index
        self._hot = server.responder.hot
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self._transport.sendto

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._current_index() == self._responder.index:
            rotation = self._hot.get(data[2:])
            if rotation is not None:
                self._sendto(data[:2] + next(rotation), addr)
                return
        reply = self._responder.answer(data, False)
        if isinstance(reply, Forward):
            self._server.spawn(self._forward(reply, data, addr))
        elif reply is not None:
            self._sendto(reply, addr)

    async def _forward(self, forward: Forward, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = await self._server.forward(forward, data, tcp=False)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket error: %s", exc)


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self, ident: bytes, future: asyncio.Future[bytes]) -> None:
        self._ident = ident
        self._future = future

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if data[:2] == self._ident and not self._future.done():
            self._future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._future.done():
            self._future.set_exception(exc)


class DNSServer:
    """Consul-compatible DNS over UDP and TCP, answering from a CatalogView.

    ``start()`` binds both sockets (with ``port=0`` one free port is picked for both);
    ``stop()`` closes them along with open TCP connections and pending forwards.
    """

    def __init__(
        self,
        view: CatalogView,
        config: DNSConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or DNSConfig()
        self.responder = Responder(view, self.config, rng)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._port = self.config.port

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens, with the real port once started."""
        return self.config.bind_address, self._port

    async def start(self) -> None:
        host, port = self.config.bind_address, self.config.port
        for _ in range(20 if port == 0 else 1):
            udp, actual = await self._bind_udp(host, port)
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, host, actual, reuse_address=True
                )
            except OSError as exc:
                udp.close()
                if port == 0:
                    continue
                raise SteppeError(f"cannot listen for DNS on TCP {host}:{actual}: {exc}") from exc
            self._udp, self._port = udp, actual
            log.info("DNS listening on %s:%d (udp, tcp)", host, actual)
            return
        raise SteppeError(f"no free port for DNS on {host} for both UDP and TCP")

    async def _bind_udp(self, host: str, port: int) -> tuple[asyncio.DatagramTransport, int]:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise SteppeError(f"cannot listen for DNS on UDP {host}:{port}: {exc}") from exc
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=sock)
        return transport, int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._writers):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> DNSServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def forward(self, forward: Forward, data: bytes, *, tcp: bool) -> bytes:
        """Asks each recursor in turn; SERVFAIL when none answers in time."""
        for host, port in self.config.recursors:
            try:
                async with asyncio.timeout(self.config.recursor_timeout):
                    if tcp:
                        reply = await _ask_tcp(host, port, data)
                    else:
                        reply = await _ask_udp(host, port, data)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                log.debug("recursor %s:%d failed: %r", host, port, exc)
                continue
            if len(reply) >= 12:
                return reply
        return self.responder.servfail(data, forward.query)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        data = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                reply = self.responder.answer(data, True)
                if reply is None:
                    return
                if isinstance(reply, Forward):
                    reply = await self.forward(reply, data, tcp=True)
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()


async def _ask_udp(host: str, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _OneReply(data[:2], future), remote_addr=(host, port)
    )
    try:
        transport.sendto(data)
        return await future
    finally:
        transport.close()


async def _ask_tcp(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(len(data).to_bytes(2, "big") + data)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(size)
    finally:
        writer.close()
