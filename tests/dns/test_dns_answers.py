"""Answer building over StaticCatalogView, through the responder, decoded with dnspython."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from steppe.dns import DNSConfig, StaticCatalogView
from steppe.dns._responder import Forward, Responder


def ask(
    responder: Responder,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    edns: int | None = None,
    ident: int = 4242,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=edns is not None, payload=edns or 512)
    query.id = ident
    reply = responder.answer(query.to_wire(), tcp)
    assert isinstance(reply, bytes)
    message = dns.message.from_wire(reply)
    assert message.id == ident
    return message


def values(message: dns.message.Message, rdtype: str, section: str = "answer") -> list[str]:
    return sorted(
        rd.to_text()
        for rrset in getattr(message, section)
        if rrset.rdtype == dns.rdatatype.from_text(rdtype)
        for rd in rrset
    )


@pytest.fixture
def responder(view: StaticCatalogView) -> Responder:
    return Responder(view, DNSConfig(), random.Random(7))


def test_a_records_are_the_passing_instances(responder: Responder) -> None:
    reply = ask(responder, "web.service.consul")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert values(reply, "A") == ["10.0.0.1", "10.0.0.2", "10.9.9.9"]


def test_srv_targets_and_their_addresses_in_additional(responder: Responder) -> None:
    reply = ask(responder, "web.service.consul", "SRV")
    assert values(reply, "SRV") == [
        "1 1 8080 node0.node.dc1.consul.",
        "1 1 8081 node1.node.dc1.consul.",
        "1 1 8082 0a090909.addr.dc1.consul.",
    ]
    glue = {rrset.name.to_text(): rrset[0].to_text() for rrset in reply.additional}
    assert glue == {
        "node0.node.dc1.consul.": "10.0.0.1",
        "node1.node.dc1.consul.": "10.0.0.2",
        "0a090909.addr.dc1.consul.": "10.9.9.9",
    }


def test_tags_rfc2782_and_datacenters(responder: Responder) -> None:
    assert values(ask(responder, "v1.web.service.consul"), "A") == ["10.0.0.1", "10.9.9.9"]
    assert values(ask(responder, "_web._v2.service.consul", "SRV"), "SRV") == [
        "1 1 8081 node1.node.dc1.consul."
    ]
    assert len(values(ask(responder, "_web._tcp.service.consul", "SRV"), "SRV")) == 3
    assert values(ask(responder, "web.service.dc2.consul", "SRV"), "SRV") == [
        "1 1 9090 far.node.dc2.consul."
    ]


def test_ipv6_service_answers_aaaa_not_a(responder: Responder) -> None:
    assert values(ask(responder, "api.service.consul", "AAAA"), "AAAA") == ["fd00::1"]
    empty = ask(responder, "api.service.consul", "A")
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer
    assert values(empty, "SOA", "authority")


def test_nodes_and_addr_names(responder: Responder) -> None:
    assert values(ask(responder, "node1.node.consul"), "A") == ["10.0.0.2"]
    assert values(ask(responder, "far.node.dc2.consul"), "A") == ["10.2.0.1"]
    assert values(ask(responder, "0a090909.addr.dc1.consul"), "A") == ["10.9.9.9"]


@pytest.mark.parametrize(
    "name",
    [
        "nope.service.consul",
        "v9.web.service.consul",
        "web.service.dc9.consul",
        "ghost.node.consul",
        "what.consul",
    ],
)
def test_unknown_names_are_nxdomain_with_soa(responder: Responder, name: str) -> None:
    reply = ask(responder, name)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not reply.answer
    soa = reply.authority[0]
    assert soa.name.to_text() == "consul."
    assert soa[0].mname.to_text() == "ns.consul."


def test_names_outside_the_domain_without_recursors_are_refused(responder: Responder) -> None:
    assert ask(responder, "example.com").rcode() == dns.rcode.REFUSED


def test_names_outside_the_domain_with_recursors_are_forwarded(view: StaticCatalogView) -> None:
    responder = Responder(view, DNSConfig(recursors=(("127.0.0.1", 53),)))
    query = dns.message.make_query("example.com", "A").to_wire()
    assert isinstance(responder.answer(query, False), Forward)


def test_case_and_id_of_each_query_come_back(responder: Responder) -> None:
    first = ask(responder, "WEB.Service.consul", ident=1)
    again = ask(responder, "web.SERVICE.Consul", ident=2)
    assert first.question[0].name.to_text() == "WEB.Service.consul."
    assert again.question[0].name.to_text() == "web.SERVICE.Consul."
    assert again.answer[0].name.to_text() == "web.SERVICE.Consul."
    assert values(again, "A") == ["10.0.0.1", "10.0.0.2", "10.9.9.9"]


def test_recursion_desired_bit_is_echoed(responder: Responder) -> None:
    query = dns.message.make_query("web.service.consul", "A")
    query.flags &= ~dns.flags.RD
    reply = dns.message.from_wire(responder.answer(query.to_wire(), False))  # type: ignore[arg-type]
    assert not reply.flags & dns.flags.RD
    assert ask(responder, "web.service.consul").flags & dns.flags.RD


def test_answer_order_varies_between_replies(responder: Responder) -> None:
    orders = {
        tuple(rd.to_text() for rd in ask(responder, "web.service.consul", "SRV").answer[0])
        for _ in range(30)
    }
    assert len(orders) > 1


def test_cached_answers_follow_the_catalog_index(
    responder: Responder, view: StaticCatalogView
) -> None:
    assert values(ask(responder, "web.service.consul"), "A") == ["10.0.0.1", "10.0.0.2", "10.9.9.9"]
    view.set_critical("web", "node0", True)
    assert values(ask(responder, "web.service.consul"), "A") == ["10.0.0.2", "10.9.9.9"]
    view.set_critical("web", "node3", False)
    assert "10.0.0.4" in values(ask(responder, "web.service.consul"), "A")


def crowded_view(count: int) -> StaticCatalogView:
    view = StaticCatalogView("dc1")
    for i in range(count):
        view.add_node(f"host-number-{i}", f"10.1.{i // 250}.{i % 250 + 1}")
        view.add_service("big", f"host-number-{i}", 1000 + i)
    return view


def test_udp_answer_limit_applies_to_plain_512_byte_queries() -> None:
    responder = Responder(crowded_view(5), DNSConfig())
    reply = ask(responder, "big.service.consul")
    assert len(values(reply, "A")) == 3
    assert reply.flags & dns.flags.TC
    assert len(values(ask(responder, "big.service.consul", edns=1232), "A")) == 5


def test_large_answers_are_truncated_to_fit_udp_and_whole_over_tcp() -> None:
    responder = Responder(crowded_view(60), DNSConfig(udp_answer_limit=1000))
    small = ask(responder, "big.service.consul", "SRV")
    assert small.flags & dns.flags.TC
    assert 0 < len(values(small, "SRV")) < 60
    assert len(responder.answer(small.to_wire(), False) or b"") <= 512  # type: ignore[arg-type]
    assert len(values(small, "A", "additional")) == len(values(small, "SRV"))
    bigger = ask(responder, "big.service.consul", "SRV", edns=1232)
    assert len(values(small, "SRV")) < len(values(bigger, "SRV")) < 60
    assert bigger.flags & dns.flags.TC and bigger.edns == 0
    full = ask(responder, "big.service.consul", "SRV", tcp=True)
    assert not full.flags & dns.flags.TC
    assert len(values(full, "SRV")) == 60
    assert len(values(full, "A", "additional")) == 60


def test_trimming_without_enable_truncate_sets_no_tc_bit() -> None:
    responder = Responder(crowded_view(5), DNSConfig(enable_truncate=False))
    reply = ask(responder, "big.service.consul")
    assert len(values(reply, "A")) == 3 and not reply.flags & dns.flags.TC


def test_ttls_come_from_dns_config(view: StaticCatalogView) -> None:
    config = DNSConfig(node_ttl=30, service_ttl={"*": 5, "web": 60})
    responder = Responder(view, config)
    assert ask(responder, "web.service.consul").answer[0].ttl == 60
    assert ask(responder, "api.service.consul", "AAAA").answer[0].ttl == 5
    assert ask(responder, "node1.node.consul").answer[0].ttl == 30


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x12",
        b"\x00" * 11,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x01\x00\xff",
    ],
)
def test_malformed_packets_are_dropped_or_formerr(responder: Responder, packet: bytes) -> None:
    reply = responder.answer(packet, False)
    assert reply is None or dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR  # type: ignore[arg-type]


def test_responses_and_other_opcodes(responder: Responder) -> None:
    query = dns.message.make_query("web.service.consul", "A")
    query.flags |= dns.flags.QR
    assert responder.answer(query.to_wire(), False) is None
    notify = dns.message.make_query("web.service.consul", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    reply = responder.answer(notify.to_wire(), False)
    assert isinstance(reply, bytes)
    assert dns.message.from_wire(reply).rcode() == dns.rcode.NOTIMP


def test_apex_soa(responder: Responder) -> None:
    reply = ask(responder, "consul", "SOA")
    assert reply.answer[0].rdtype == dns.rdatatype.SOA
