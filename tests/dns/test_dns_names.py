from __future__ import annotations

import pytest

from steppe.dns._names import Kind, Lookup, decode_addr, encode_addr, parse_name

DOMAIN = ("consul",)


def labels(name: str) -> tuple[str, ...]:
    return tuple(name.split(".")) if name else ()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web.service.consul", Lookup(Kind.SERVICE, "web")),
        ("v1.web.service.consul", Lookup(Kind.SERVICE, "web", tag="v1")),
        ("web.service.dc2.consul", Lookup(Kind.SERVICE, "web", dc="dc2")),
        ("v1.web.service.dc2.consul", Lookup(Kind.SERVICE, "web", tag="v1", dc="dc2")),
        ("_web._tcp.service.consul", Lookup(Kind.SERVICE, "web")),
        ("_web._v1.service.consul", Lookup(Kind.SERVICE, "web", tag="v1")),
        ("_web._tcp.service.dc2.consul", Lookup(Kind.SERVICE, "web", dc="dc2")),
        ("node1.node.consul", Lookup(Kind.NODE, "node1")),
        ("node1.node.dc2.consul", Lookup(Kind.NODE, "node1", dc="dc2")),
        ("0a000001.addr.dc1.consul", Lookup(Kind.ADDR, "0a000001", dc="dc1")),
        ("consul", Lookup(Kind.APEX)),
        ("example.com", Lookup(Kind.OUTSIDE)),
        ("com", Lookup(Kind.OUTSIDE)),
        ("", Lookup(Kind.OUTSIDE)),
        ("service.consul", Lookup(Kind.UNKNOWN)),
        ("a.b.web.service.consul", Lookup(Kind.UNKNOWN)),
        ("web.nothing.consul", Lookup(Kind.UNKNOWN)),
        ("zz.addr.consul", Lookup(Kind.UNKNOWN)),
    ],
)
def test_parse_name(name: str, expected: Lookup) -> None:
    assert parse_name(labels(name), DOMAIN) == expected


def test_custom_multi_label_domain() -> None:
    domain = ("disco", "example")
    assert parse_name(labels("web.service.disco.example"), domain) == Lookup(Kind.SERVICE, "web")
    assert parse_name(labels("web.service.consul"), domain).kind is Kind.OUTSIDE


def test_addr_labels_round_trip() -> None:
    assert encode_addr("10.0.0.1") == "0a000001"
    assert decode_addr("0a000001") == bytes([10, 0, 0, 1])
    six = encode_addr("fd00::1")
    assert six is not None and len(six) == 32
    assert encode_addr("db.example.com") is None
