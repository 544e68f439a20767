"""A real server on a loopback port, asked by Debian's ``dig`` and by dnspython."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import uvloop
from tests.dns.catalog import make_view

from steppe.dns import DNSConfig, DNSServer, StaticCatalogView


async def dig(port: int, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig",
        "@127.0.0.1",
        "-p",
        str(port),
        "+time=3",
        "+tries=1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode() + out.decode()
    return out.decode()


def lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.strip())


@contextlib.asynccontextmanager
async def running(view: StaticCatalogView, config: DNSConfig) -> AsyncIterator[DNSServer]:
    server = DNSServer(view, config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def server(view: StaticCatalogView) -> AsyncIterator[DNSServer]:
    async with running(view, DNSConfig(port=0)) as started:
        yield started


async def udp(server: DNSServer, message: dns.message.Message) -> dns.message.Message:
    host, port = server.address
    return await dns.asyncquery.udp(message, host, port=port, timeout=5)


async def test_dig_a_srv_tags_and_datacenters(server: DNSServer) -> None:
    port = server.address[1]
    assert lines(await dig(port, "web.service.consul", "+short")) == [
        "10.0.0.1",
        "10.0.0.2",
        "10.9.9.9",
    ]
    assert lines(await dig(port, "v1.web.service.consul", "+short")) == ["10.0.0.1", "10.9.9.9"]
    assert lines(await dig(port, "_web._tcp.service.dc2.consul", "SRV", "+short")) == [
        "1 1 9090 far.node.dc2.consul."
    ]
    assert lines(await dig(port, "node2.node.consul", "+short")) == ["10.0.0.3"]
    srv = await dig(port, "web.service.consul", "SRV", "+noall", "+additional")
    assert "node0.node.dc1.consul.\t0\tIN\tA\t10.0.0.1" in srv
    assert "0a090909.addr.dc1.consul. 0\tIN\tA\t10.9.9.9" in srv


async def test_dig_unknown_name_is_nxdomain_with_soa(server: DNSServer) -> None:
    out = await dig(server.address[1], "nothing.service.consul")
    assert "status: NXDOMAIN" in out
    assert "consul.\t\t\t0\tIN\tSOA\tns.consul. hostmaster.consul." in out


async def test_tc_over_udp_and_full_answer_over_tcp() -> None:
    view = StaticCatalogView("dc1")
    for i in range(40):
        view.add_node(f"n{i}", f"10.3.0.{i + 1}")
        view.add_service("many", f"n{i}", 80)
    async with running(view, DNSConfig(port=0, udp_answer_limit=100)) as server:
        port = server.address[1]
        small = await dig(port, "many.service.consul", "+notcp", "+ignore", "+noedns")
        assert "flags: qr aa tc rd;" in small
        buffered = await dig(
            port, "many.service.consul", "SRV", "+notcp", "+ignore", "+bufsize=1024"
        )
        assert "flags: qr aa tc rd" in buffered
        full = await dig(port, "many.service.consul", "+tcp", "+short")
        assert len(lines(full)) == 40
        retried = await dig(port, "many.service.consul", "+short", "+noedns")
        assert len(lines(retried)) == 40


async def test_answers_follow_the_view_index(server: DNSServer, view: StaticCatalogView) -> None:
    query = dns.message.make_query("web.service.consul", "A")
    before = await udp(server, query)
    assert sum(len(r) for r in before.answer) == 3
    view.set_critical("web", "node1", True)
    view.add_node("node9", "10.0.0.99")
    view.add_service("web", "node9", 80)
    after = await udp(server, query)
    assert sorted(rd.to_text() for rd in after.answer[0]) == ["10.0.0.1", "10.0.0.99", "10.9.9.9"]


class _TinyResolver(asyncio.DatagramProtocol):
    """Answers every ``*.example.com`` A query with 192.0.2.7, anything else NXDOMAIN."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        name = query.question[0].name
        if name.to_text().endswith("example.com."):
            reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.7"))
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
async def tiny_resolver() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_TinyResolver, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def test_other_names_go_to_the_recursors(
    view: StaticCatalogView, tiny_resolver: int, silent_port: int
) -> None:
    recursors = (("127.0.0.1", silent_port), ("127.0.0.1", tiny_resolver))
    config = DNSConfig(port=0, recursors=recursors, recursor_timeout=0.5)
    async with running(view, config) as server:
        port = server.address[1]
        assert lines(await dig(port, "www.example.com", "+short")) == ["192.0.2.7"]
        assert "status: NXDOMAIN" in await dig(port, "www.example.org")
        assert lines(await dig(port, "web.service.consul", "+short"))[0] == "10.0.0.1"
        assert "flags: qr aa rd ra;" in await dig(port, "web.service.consul")


async def test_servfail_when_no_recursor_answers(view: StaticCatalogView, silent_port: int) -> None:
    config = DNSConfig(port=0, recursors=(("127.0.0.1", silent_port),), recursor_timeout=0.2)
    async with running(view, config) as server:
        assert "status: SERVFAIL" in await dig(server.address[1], "www.example.com")


async def test_without_recursors_other_names_are_refused(server: DNSServer) -> None:
    assert "status: REFUSED" in await dig(server.address[1], "www.example.com")


async def test_malformed_packets_do_not_kill_the_server(server: DNSServer) -> None:
    host, port = server.address
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        for junk in (b"", b"\xff", b"\x00" * 12, b"\x12\x34\x01\x00\x00\x01" + b"\xff" * 40):
            await loop.sock_sendto(sock, junk, (host, port))
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x00\x05hello")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    finally:
        sock.close()
    assert lines(await dig(port, "node0.node.consul", "+short")) == ["10.0.0.1"]
    assert lines(await dig(port, "node0.node.consul", "+short", "+tcp")) == ["10.0.0.1"]


async def test_many_queries_on_one_tcp_connection(server: DNSServer) -> None:
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for name in ("web.service.consul", "node1.node.consul", "nope.service.consul"):
            wire = dns.message.make_query(name, "A").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        rcodes = []
        for _ in range(3):
            size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
            rcodes.append(dns.message.from_wire(await reader.readexactly(size)).rcode())
        assert rcodes == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    finally:
        writer.close()


def test_serves_under_uvloop() -> None:
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        server = DNSServer(make_view(), DNSConfig(port=0))
        await server.start()
        stop = asyncio.Event()
        box.update(server=server, stop=stop, loop=asyncio.get_running_loop())
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=uvloop.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        server = box["server"]
        assert isinstance(server, DNSServer)
        host, port = server.address
        reply = dns.query.udp(dns.message.make_query("web.service.consul", "SRV"), host, 5, port)
        assert sum(len(r) for r in reply.answer) == 3
        assert reply.additional
        reply = dns.query.tcp(dns.message.make_query("node1.node.consul", "A"), host, 5, port)
        assert reply.answer[0][0].to_text() == "10.0.0.2"
    finally:
        if "loop" in box:
            loop, stop = box["loop"], box["stop"]
            assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)
