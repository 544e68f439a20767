"""Python snake_case fields, Nomad/Consul PascalCase JSON.

Nomad spells acronyms in capitals (``JobID``, ``MemoryMB``, ``HTTPAddr``) but not
everywhere (``Cpu``, ``CpuShares`` in allocated resources): the generic rule covers
the first, a per-class override covers the rest.
"""

from __future__ import annotations

from collections.abc import Callable

ACRONYMS = {
    "id": "ID",
    "ids": "IDs",
    "cpu": "CPU",
    "mb": "MB",
    "ip": "IP",
    "http": "HTTP",
    "tcp": "TCP",
    "udp": "UDP",
    "ttl": "TTL",
    "dns": "DNS",
    "url": "URL",
    "tls": "TLS",
    "mbits": "MBits",
    "cidr": "CIDR",
    "tg": "TG",
    "acl": "ACL",
    "grpc": "GRPC",
    "dc": "DC",
}


def pascal(name: str) -> str:
    return "".join(ACRONYMS.get(part, part.capitalize()) for part in name.split("_"))


def nomad_names(**overrides: str) -> Callable[[str], str]:
    """A msgspec ``rename`` callable: :func:`pascal`, except where ``overrides`` say."""

    def rename(name: str) -> str:
        return overrides.get(name) or pascal(name)

    return rename


NOMAD = nomad_names()

NS = 1_000_000_000
"""Nomad's JSON carries durations as integer nanoseconds."""


def seconds(ns: int) -> float:
    return ns / NS
