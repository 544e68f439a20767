"""Turning a lookup into records, reading the catalog through a CatalogView.

The result keeps each answer record together with the additional records it needs (an SRV
and the address of its target) so that answers can be shuffled and trimmed to fit a UDP
reply without orphaning or dropping the wrong glue.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from steppe.dns._config import DNSConfig
from steppe.dns._names import Kind, Lookup, decode_addr, encode_addr
from steppe.dns._view import CatalogView, ServiceInstance
from steppe.dns._wire import (
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_SOA,
    TYPE_SRV,
    Record,
    Soa,
    Srv,
)

Group = tuple[Record, tuple[Record, ...]]


@dataclass
class Answer:
    rcode: int
    groups: list[Group] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)


def resolve(
    lookup: Lookup, qname: str, qtype: int, view: CatalogView, config: DNSConfig, index: int
) -> Answer:
    """``qname`` is the lowercase question name; ``index`` becomes the SOA serial."""
    domain = config.domain.rstrip(".")
    if lookup.kind is Kind.SERVICE:
        answer = _service(lookup, qname, qtype, view, config, domain)
    elif lookup.kind is Kind.NODE:
        answer = _node(lookup, qname, qtype, view, config)
    elif lookup.kind is Kind.ADDR:
        packed = decode_addr(lookup.name) or b""
        groups = _address_records(qname, qtype, packed, config.node_ttl)
        answer = Answer(RCODE_NOERROR, [(r, ()) for r in groups])
    elif lookup.kind is Kind.APEX and qtype in (TYPE_SOA, TYPE_ANY):
        return Answer(RCODE_NOERROR, [(soa_record(domain, index), ())])
    elif lookup.kind is Kind.APEX:
        answer = Answer(RCODE_NOERROR)
    else:
        answer = Answer(RCODE_NXDOMAIN)
    if not answer.groups:
        answer.authority.append(soa_record(domain, index))
    return answer


def soa_record(domain: str, index: int) -> Record:
    soa = Soa(f"ns.{domain}", f"hostmaster.{domain}", index & 0xFFFFFFFF, 3600, 600, 86400, 0)
    return Record(domain, TYPE_SOA, 0, soa)


def _service(
    lookup: Lookup, qname: str, qtype: int, view: CatalogView, config: DNSConfig, domain: str
) -> Answer:
    dc = lookup.dc or view.datacenter
    instances = view.service_instances(lookup.name, lookup.tag, dc)
    if not instances:
        return Answer(RCODE_NXDOMAIN)
    ttl = config.ttl_for_service(lookup.name)
    if qtype == TYPE_SRV:
        return Answer(RCODE_NOERROR, [_srv(qname, i, ttl, domain) for i in instances])
    seen: set[str] = set()
    groups: list[Group] = []
    for instance in instances:
        if instance.address in seen:
            continue
        seen.add(instance.address)
        packed = _packed(instance.address)
        groups.extend((r, ()) for r in _address_records(qname, qtype, packed, ttl))
    return Answer(RCODE_NOERROR, groups)


def _srv(qname: str, instance: ServiceInstance, ttl: int, domain: str) -> Group:
    dc = instance.dc
    label = encode_addr(instance.address)
    if instance.address == instance.node_address or label is None:
        target = f"{instance.node}.node.{dc}.{domain}"
    else:
        target = f"{label}.addr.{dc}.{domain}"
    srv = Record(qname, TYPE_SRV, ttl, Srv(1, 1, instance.port, target))
    glue = _address_records(target, TYPE_ANY, _packed(instance.address), ttl)
    return srv, tuple(glue)


def _node(lookup: Lookup, qname: str, qtype: int, view: CatalogView, config: DNSConfig) -> Answer:
    node = view.node(lookup.name, lookup.dc or view.datacenter)
    if node is None:
        return Answer(RCODE_NXDOMAIN)
    records = _address_records(qname, qtype, _packed(node.address), config.node_ttl)
    return Answer(RCODE_NOERROR, [(r, ()) for r in records])


def _address_records(name: str, qtype: int, packed: bytes, ttl: int) -> list[Record]:
    if len(packed) == 4 and qtype in (TYPE_A, TYPE_ANY):
        return [Record(name, TYPE_A, ttl, packed)]
    if len(packed) == 16 and qtype in (TYPE_AAAA, TYPE_ANY):
        return [Record(name, TYPE_AAAA, ttl, packed)]
    return []


def _packed(address: str) -> bytes:
    """Addresses that are not IPs (hostnames) have no A/AAAA record here."""
    try:
        return ipaddress.ip_address(address).packed
    except ValueError:
        return b""
