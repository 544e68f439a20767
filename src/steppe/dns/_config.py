"""Typed DNS settings, read from the plain dict the agent config parser produces.

Keys and defaults follow Consul's agent configuration (``domain``, ``recursors``,
``dns_config {}``, ``ports { dns }``, ``addresses { dns }``) with one deliberate
difference: ``enable_truncate`` defaults to true, because clients that are handed a
silently trimmed UDP answer never learn to retry over TCP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steppe.errors import Problem, ValidationError
from steppe.structs import parse_duration as go_parse_duration

_KNOWN_KEYS = {
    "node_ttl",
    "service_ttl",
    "allow_stale",
    "max_stale",
    "udp_answer_limit",
    "enable_truncate",
    "recursor_timeout",
}
# Consul settings Steppe accepts so existing configs load, but that change nothing here.
_ACCEPTED_IGNORED = {
    "only_passing",
    "recursor_strategy",
    "disable_compression",
    "a_record_limit",
    "soa",
    "use_cache",
    "cache_max_age",
    "enable_additional_node_meta_txt",
    "prefer_namespace",
}


@dataclass(frozen=True)
class DNSConfig:
    """Everything the DNS server needs besides the catalog view."""

    domain: str = "consul."
    bind_address: str = "127.0.0.1"
    port: int = 8600
    recursors: tuple[tuple[str, int], ...] = ()
    recursor_timeout: float = 2.0
    node_ttl: int = 0
    service_ttl: Mapping[str, int] = field(default_factory=dict)
    allow_stale: bool = True
    max_stale: float = 87600 * 3600.0
    udp_answer_limit: int = 3
    enable_truncate: bool = True

    def ttl_for_service(self, name: str) -> int:
        """Exact name first, then the longest ``prefix*`` pattern, then ``*``, as Consul does."""
        if name in self.service_ttl:
            return self.service_ttl[name]
        best: tuple[int, int] | None = None
        for pattern, ttl in self.service_ttl.items():
            matches = pattern.endswith("*") and name.startswith(pattern[:-1])
            if matches and (best is None or len(pattern) > best[0]):
                best = (len(pattern), ttl)
        return best[1] if best is not None else 0


def parse_duration(value: object, where: str) -> float:
    """Go-style durations ("10s", "1m30s", "500ms"); bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValidationError(Problem(where, f"expected a duration like '10s', got {value!r}"))
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            seconds = go_parse_duration(value) / 1e9
        except ValueError as exc:
            raise ValidationError(
                Problem(where, f"expected a duration like '10s', got {value!r}")
            ) from exc
    else:
        raise ValidationError(Problem(where, f"expected a duration like '10s', got {value!r}"))
    if seconds < 0:
        raise ValidationError(Problem(where, f"must not be negative, got {value!r}"))
    return seconds


def parse_dns_config(agent: Mapping[str, Any]) -> DNSConfig:
    """Builds the DNS settings from an agent config dict; other top-level keys are ignored.

    Raises ValidationError listing every bad value with its key path.
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {}

    def attempt(key: str, fn: Any, *args: Any) -> None:
        try:
            values[key] = fn(*args)
        except ValidationError as exc:
            problems.extend(exc.problems)

    if "domain" in agent:
        attempt("domain", _parse_domain, agent["domain"], "domain")
    if "recursors" in agent:
        attempt("recursors", _parse_recursors, agent["recursors"], "recursors")
    ports = _block(agent.get("ports"), "ports", problems)
    if "dns" in ports:
        attempt("port", _parse_int, ports["dns"], "ports.dns", 0, 65535)
    addresses = _block(agent.get("addresses"), "addresses", problems)
    bind = addresses.get("dns", agent.get("client_addr"))
    if bind is not None:
        attempt("bind_address", _parse_ip, bind, "addresses.dns")
    _parse_dns_block(_block(agent.get("dns_config"), "dns_config", problems), values, problems)
    if problems:
        raise ValidationError(problems)
    return DNSConfig(**values)


def _parse_dns_block(
    block: Mapping[str, Any], values: dict[str, Any], problems: list[Problem]
) -> None:
    for key, raw in block.items():
        where = f"dns_config.{key}"
        try:
            if key in ("node_ttl", "recursor_timeout", "max_stale"):
                seconds = parse_duration(raw, where)
                values[key] = int(seconds) if key == "node_ttl" else seconds
            elif key == "service_ttl":
                values[key] = _parse_service_ttl(raw, where)
            elif key in ("allow_stale", "enable_truncate"):
                if not isinstance(raw, bool):
                    raise ValidationError(Problem(where, f"expected true or false, got {raw!r}"))
                values[key] = raw
            elif key == "udp_answer_limit":
                values[key] = _parse_int(raw, where, 1, 65535)
            elif key not in _ACCEPTED_IGNORED:
                known = ", ".join(sorted(_KNOWN_KEYS))
                raise ValidationError(Problem(where, f"unknown setting (known: {known})"))
        except ValidationError as exc:
            problems.extend(exc.problems)


def _block(raw: object, where: str, problems: list[Problem]) -> Mapping[str, Any]:
    """HCL parsers hand blocks over as a one-element list of dicts; accept both shapes."""
    if raw is None:
        return {}
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, f"expected a block of settings, got {raw!r}"))
        return {}
    return raw


def _parse_domain(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip(".").strip():
        raise ValidationError(Problem(where, f"expected a domain name like 'consul.', got {raw!r}"))
    labels = raw.strip().strip(".").lower().split(".")
    if any(not label or len(label) > 63 for label in labels):
        raise ValidationError(Problem(where, f"not a valid domain name: {raw!r}"))
    return ".".join(labels) + "."


def _parse_service_ttl(raw: object, where: str) -> dict[str, int]:
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, Mapping):
        raise ValidationError(Problem(where, f"expected a map of service name to TTL, got {raw!r}"))
    return {
        str(name).lower(): int(parse_duration(ttl, f"{where}.{name}")) for name, ttl in raw.items()
    }


def _parse_int(raw: object, where: str, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValidationError(Problem(where, f"expected an integer, got {raw!r}"))
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(Problem(where, f"expected an integer, got {raw!r}")) from None
    if not low <= value <= high:
        raise ValidationError(Problem(where, f"must be between {low} and {high}, got {value}"))
    return value


def _parse_ip(raw: object, where: str) -> str:
    try:
        return str(ipaddress.ip_address(str(raw).strip()))
    except ValueError:
        raise ValidationError(Problem(where, f"expected an IP address, got {raw!r}")) from None


def _parse_recursors(raw: object, where: str) -> tuple[tuple[str, int], ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list | tuple):
        raise ValidationError(Problem(where, f"expected a list of 'host:port', got {raw!r}"))
    found = []
    problems: list[Problem] = []
    for i, item in enumerate(raw):
        try:
            found.append(_parse_recursor(item, f"{where}[{i}]"))
        except ValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ValidationError(problems)
    return tuple(found)


def _parse_recursor(raw: object, where: str) -> tuple[str, int]:
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError(Problem(where, f"expected 'ip:port', got {raw!r}"))
    text = raw.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValidationError(Problem(where, f"expected '[ipv6]:port', got {raw!r}"))
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    return _parse_ip(host, where), _parse_int(port, where, 1, 65535)
