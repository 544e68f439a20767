"""What a query name asks for, following Consul's naming scheme.

``[tag.]name.service[.dc].<domain>``, RFC 2782 ``_name._tag.service[.dc].<domain>`` (a tag
of ``tcp`` means any tag), ``node.node[.dc].<domain>``, ``<hex ip>.addr[.dc].<domain>``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    OUTSIDE = "outside"
    APEX = "apex"
    SERVICE = "service"
    NODE = "node"
    ADDR = "addr"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Lookup:
    kind: Kind
    name: str = ""
    tag: str | None = None
    dc: str | None = None


_TYPES = {"service": Kind.SERVICE, "node": Kind.NODE, "addr": Kind.ADDR}


def parse_name(labels: tuple[str, ...], domain: tuple[str, ...]) -> Lookup:
    """``labels`` and ``domain`` are lowercase; ``dc`` None means the local datacenter."""
    n = len(domain)
    if len(labels) < n or labels[len(labels) - n :] != domain:
        return Lookup(Kind.OUTSIDE)
    inner = labels[: len(labels) - n]
    if not inner:
        return Lookup(Kind.APEX)
    if any("." in label or not label for label in inner):
        return Lookup(Kind.UNKNOWN)
    if inner[-1] in _TYPES:
        kind, prefix, dc = _TYPES[inner[-1]], inner[:-1], None
    elif len(inner) >= 2 and inner[-2] in _TYPES:
        kind, prefix, dc = _TYPES[inner[-2]], inner[:-2], inner[-1]
    else:
        return Lookup(Kind.UNKNOWN)
    if not prefix:
        return Lookup(Kind.UNKNOWN)
    if kind is Kind.SERVICE:
        return _service(prefix, dc)
    if kind is Kind.NODE:
        return Lookup(Kind.NODE, ".".join(prefix), dc=dc)
    if len(prefix) != 1 or decode_addr(prefix[0]) is None:
        return Lookup(Kind.UNKNOWN)
    return Lookup(Kind.ADDR, prefix[0], dc=dc)


def _service(prefix: tuple[str, ...], dc: str | None) -> Lookup:
    if len(prefix) == 1:
        return Lookup(Kind.SERVICE, prefix[0], dc=dc)
    if len(prefix) != 2:
        return Lookup(Kind.UNKNOWN)
    first, second = prefix
    if first.startswith("_") and second.startswith("_") and len(first) > 1 and len(second) > 1:
        tag = second[1:]
        return Lookup(Kind.SERVICE, first[1:], tag=None if tag == "tcp" else tag, dc=dc)
    return Lookup(Kind.SERVICE, second, tag=first, dc=dc)


def encode_addr(address: str) -> str | None:
    """The ``.addr.`` label Consul uses as an SRV target when a service has its own address."""
    try:
        return ipaddress.ip_address(address).packed.hex()
    except ValueError:
        return None


def decode_addr(label: str) -> bytes | None:
    if len(label) not in (8, 32):
        return None
    try:
        return bytes.fromhex(label)
    except ValueError:
        return None
