"""The RPC transport on real loopback sockets: typed calls, error mapping, the method
allow-list, frame limits, bad peers, reconnection, deadlines and TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from tests.support.waiting import async_wait_until

from steppe.errors import ConflictError, Problem, RemoteError, ValidationError
from steppe.rpc import (
    FrameTooLargeError,
    Method,
    ProtocolError,
    RPCClient,
    RPCServer,
    UnreachableError,
    method_table,
    parse_address,
    with_default_port,
)
from steppe.structs import Allocation
from steppe.testing import mock

ECHO = Method("echo", tuple[str], str)
ALLOCS = Method("allocs", tuple[list[Allocation]], list[str])
BOOM = Method("boom", tuple[()], str)
CONFLICT = Method("conflict", tuple[()], type(None))
INVALID = Method("invalid", tuple[()], type(None))
HANG = Method("hang", tuple[()], str)


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


class Handlers:
    rpc_methods = method_table(ECHO, ALLOCS, BOOM, CONFLICT, INVALID, HANG)

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def echo(self, text: str) -> str:
        return text

    async def allocs(self, allocs: list[Allocation]) -> list[str]:
        assert all(isinstance(a, Allocation) for a in allocs)
        return [a.id for a in allocs]

    async def boom(self) -> str:
        raise RuntimeError("kaboom")

    async def conflict(self) -> None:
        raise ConflictError("lost the race")

    async def invalid(self) -> None:
        raise ValidationError([Problem("job.count", "must be >= 0"), Problem("job.id", "empty")])

    async def hang(self) -> str:
        await self.release.wait()
        return "released"

    async def secret(self) -> str:
        return "never served: not in the allow-list"


@pytest.fixture
async def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def rpc(handlers: Handlers) -> AsyncIterator[RPCServer]:
    server = RPCServer(handlers, "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        handlers.release.set()
        await server.stop()


@pytest.fixture
async def client(rpc: RPCServer) -> AsyncIterator[RPCClient]:
    client = RPCClient(rpc.address, timeout=10)
    try:
        yield client
    finally:
        await client.close()


async def test_structs_travel_with_their_types(client: RPCClient) -> None:
    allocs = [mock.alloc(), mock.alloc()]
    assert await client.call(ALLOCS, allocs) == [a.id for a in allocs]
    assert await client.call(ECHO, "héllo") == "héllo"


async def test_errors_come_back_as_the_same_exception_types(client: RPCClient) -> None:
    with pytest.raises(ConflictError, match="lost the race"):
        await client.call(CONFLICT)
    with pytest.raises(ValidationError) as caught:
        await client.call(INVALID)
    assert caught.value.problems == [
        Problem("job.count", "must be >= 0"),
        Problem("job.id", "empty"),
    ]


async def test_unexpected_errors_are_internal_and_the_server_carries_on(
    client: RPCClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(RemoteError, match="internal error in boom: RuntimeError"):
        await client.call(BOOM)
    assert "RPC boom from" in caplog.text
    assert await client.call(ECHO, "still here") == "still here"


async def test_only_allow_listed_methods_are_served(client: RPCClient) -> None:
    for name in ("secret", "__init__", "rpc_methods", "release"):
        with pytest.raises(ValidationError, match=f"unknown RPC method '{name}'"):
            await client.call(name)


async def test_arguments_of_the_wrong_type_are_refused_by_name(client: RPCClient) -> None:
    with pytest.raises(ValidationError, match="echo arguments"):
        await client.call("echo", 42)
    with pytest.raises(ValidationError, match="echo arguments"):
        await client.call("echo")


async def test_a_slow_call_does_not_hold_up_others_on_the_connection(
    rpc: RPCServer, client: RPCClient, handlers: Handlers
) -> None:
    slow = asyncio.create_task(client.call(HANG))
    await async_wait_until(lambda: rpc.in_flight == 1, what="the slow call in flight")
    assert await asyncio.wait_for(client.call(ECHO, "quick"), 10) == "quick"
    assert not slow.done()
    assert rpc.connection_count == 1
    handlers.release.set()
    assert await asyncio.wait_for(slow, 10) == "released"


async def test_a_call_past_its_deadline_fails_and_the_next_one_reconnects(
    client: RPCClient, handlers: Handlers
) -> None:
    with pytest.raises(UnreachableError, match="no answer to hang"):
        await client.call(HANG, timeout=0.2)
    assert await client.call(ECHO, "again") == "again"


async def test_the_client_reconnects_after_the_server_restarts(handlers: Handlers) -> None:
    server = RPCServer(handlers, "127.0.0.1", 0)
    await server.start()
    client = RPCClient(server.address)
    try:
        assert await client.call(ECHO, "one") == "one"
        await server.stop()
        with pytest.raises(UnreachableError):
            await client.call(ECHO, "down")
        await server.start()
        assert await client.call(ECHO, "two") == "two"
    finally:
        await client.close()
        await server.stop()


async def test_unreachable_server_is_a_clear_error() -> None:
    server = RPCServer(Handlers(), "127.0.0.1", 0)
    await server.start()
    address = server.address
    await server.stop()
    client = RPCClient(address, connect_timeout=5)
    with pytest.raises(UnreachableError, match=f"cannot connect to {address}"):
        await client.call(ECHO, "x")
    await client.close()


async def test_a_request_over_the_limit_is_never_sent(rpc: RPCServer) -> None:
    client = RPCClient(rpc.address, max_frame=1024)
    with pytest.raises(FrameTooLargeError, match="exceeds the RPC frame limit of 1024 bytes"):
        await client.call(ECHO, "x" * 2000)
    assert not client.connected
    await client.close()


async def test_the_server_refuses_an_oversized_frame_and_keeps_serving(
    handlers: Handlers,
) -> None:
    server = RPCServer(handlers, "127.0.0.1", 0, max_frame=1024)
    await server.start()
    big, small = RPCClient(server.address), RPCClient(server.address)
    try:
        assert await small.call(ECHO, "before") == "before"
        with pytest.raises(ProtocolError, match="exceeds the RPC frame limit of 1024 bytes"):
            await big.call(ECHO, "x" * 2000)
        assert await small.call(ECHO, "after") == "after"
    finally:
        await big.close()
        await small.close()
        await server.stop()


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", 3) + b"\xc1\xc1\xc1",
        _frame(msgspec.msgpack.encode({"id": "x"})),
        struct.pack(">I", 0xFFFFFFFF),
    ],
    ids=["not-msgpack", "wrong-envelope", "absurd-length"],
)
async def test_a_bad_frame_closes_only_that_connection(
    rpc: RPCServer, client: RPCClient, garbage: bytes
) -> None:
    assert await client.call(ECHO, "before") == "before"
    reader, writer = await asyncio.open_connection(*parse_address(rpc.address))
    try:
        writer.write(garbage)
        await writer.drain()
        (size,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 10))
        reason = msgspec.msgpack.decode(await reader.readexactly(size))
        assert reason["id"] == 0
        assert reason["error"]["kind"] in ("protocol", "frame_too_large")
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
    assert await client.call(ECHO, "after") == "after"


@pytest.mark.parametrize("bad", ["nohost", "host:", ":4647", "host:99999", "host:port"])
def test_addresses_are_checked(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not host:port"):
        parse_address(bad)


def test_ipv6_addresses_parse() -> None:
    assert parse_address("[::1]:4647") == ("::1", 4647)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("10.0.0.1", "10.0.0.1:4647"),
        ("10.0.0.1:5000", "10.0.0.1:5000"),
        ("server.example", "server.example:4647"),
        ("::1", "[::1]:4647"),
        ("[::1]", "[::1]:4647"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_servers_without_a_port_get_the_default(given: str, expected: str) -> None:
    assert with_default_port(given, 4647) == expected


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=steppe-test"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls(handlers: Handlers, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = RPCServer(handlers, "127.0.0.1", 0, ssl=server_ctx)
    await server.start()
    trusted = RPCClient(server.address, ssl=ssl.create_default_context(cafile=str(cert)))
    untrusted = RPCClient(server.address, ssl=ssl.create_default_context())
    try:
        assert await trusted.call(ALLOCS, [mock.alloc(id="a1")]) == ["a1"]
        with pytest.raises(UnreachableError, match="certificate verify failed"):
            await untrusted.call(ECHO, "x")
        assert await trusted.call(ECHO, "still") == "still"
    finally:
        await trusted.close()
        await untrusted.close()
        await server.stop()
