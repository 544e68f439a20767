"""Service and check definitions as agents receive them, checked before anything is stored.

Consul's agent API takes ``PascalCase`` keys, and its config files ``snake_case``; both
spellings are accepted here (keys compared without case or underscores). Every problem is
reported with the field it concerns, so a bad registration is a 400 that says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from steppe.errors import Problem, ValidationError
from steppe.structs import HEALTH_CRITICAL, HEALTH_STATUSES
from steppe.structs import parse_duration as go_parse_duration

NS = 1_000_000_000


def parse_duration(value: Any, what: str) -> int:
    """Nanoseconds from a Go duration string ("10s", "1m30s") or a number of nanoseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(Problem(what, 'expected a duration like "10s"'))
    if isinstance(value, int | float):
        return int(value)
    try:
        return go_parse_duration(value)
    except ValueError as exc:
        raise ValidationError(Problem(what, str(exc))) from exc


_DISPLAY = {
    "ttl": "TTL", "tcp": "TCP", "http": "HTTP", "id": "ID", "checkid": "CheckID",
    "serviceid": "ServiceID", "scriptargs": "ScriptArgs", "tlsskipverify": "TLSSkipVerify",
    "deregistercriticalserviceafter": "DeregisterCriticalServiceAfter",
    "enabletagoverride": "EnableTagOverride",
}  # fmt: skip


def field_name(key: str) -> str:
    """The normalized key as Consul's documentation spells it, for error messages."""
    return _DISPLAY.get(key, key.capitalize())


def normalized(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError(Problem(what, "expected a JSON object"))
    return {k.replace("_", "").lower(): v for k, v in body.items() if isinstance(k, str)}


@dataclass(frozen=True)
class CheckDef:
    """A check the local agent runs (or, for TTL checks, waits to be told about)."""

    check_id: str
    name: str
    kind: str
    """One of tcp, http, script, ttl."""
    target: str = ""
    args: tuple[str, ...] = ()
    method: str = "GET"
    header: dict[str, list[str]] = field(default_factory=dict)
    interval: int = 0
    timeout: int = 10 * NS
    ttl: int = 0
    notes: str = ""
    service_id: str = ""
    status: str = HEALTH_CRITICAL
    deregister_critical_after: int = 0
    tls_skip_verify: bool = False


@dataclass(frozen=True)
class ServiceDef:
    service_id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    enable_tag_override: bool = False
    checks: tuple[CheckDef, ...] = ()


def _str(d: dict[str, Any], key: str, what: str, default: str = "") -> str:
    value = d.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValidationError(Problem(f"{what}.{field_name(key)}", "expected a string"))
    return value


def _str_list(d: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = d.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(Problem(f"{what}.{field_name(key)}", "expected a list of strings"))
    return tuple(value)


def _str_map(d: dict[str, Any], key: str, what: str) -> dict[str, str]:
    value = d.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError(Problem(f"{what}.{field_name(key)}", "expected an object of strings"))
    return dict(value)


def _duration(d: dict[str, Any], key: str, what: str) -> int:
    if d.get(key) in (None, ""):
        return 0
    ns = parse_duration(d[key], f"{what}.{field_name(key)}")
    if ns < 0:
        raise ValidationError(Problem(f"{what}.{field_name(key)}", "must not be negative"))
    return ns


def parse_check(
    body: Any, what: str = "Check", service_id: str = "", default_id: str = ""
) -> CheckDef:
    d = normalized(body, what)
    name = _str(d, "name", what)
    check_id = _str(d, "checkid", what) or _str(d, "id", what) or default_id or name
    if not check_id:
        raise ValidationError(Problem(f"{what}.Name", "a check needs a Name or an ID"))
    service_id = _str(d, "serviceid", what) or service_id
    args = _str_list(d, "args", what) or _str_list(d, "scriptargs", what)
    interval, ttl = _duration(d, "interval", what), _duration(d, "ttl", what)
    timeout = _duration(d, "timeout", what) or 10 * NS
    kinds = [
        k
        for k, present in (("tcp", d.get("tcp")), ("http", d.get("http")), ("script", args))
        if present
    ]
    if ttl:
        kinds.append("ttl")
    if len(kinds) != 1:
        raise ValidationError(Problem(what, "a check needs exactly one of TCP, HTTP, Args or TTL"))
    kind = kinds[0]
    if kind != "ttl" and interval <= 0:
        raise ValidationError(Problem(f"{what}.Interval", f"a {kind} check needs an interval"))
    status = _str(d, "status", what) or HEALTH_CRITICAL
    if status not in HEALTH_STATUSES:
        raise ValidationError(Problem(f"{what}.Status", f"{status!r} is not a check status"))
    header = d.get("header") or {}
    if not isinstance(header, dict):
        raise ValidationError(Problem(f"{what}.Header", "expected an object of string lists"))
    return CheckDef(
        check_id=check_id,
        name=name or (f"Service '{service_id}' check" if service_id else check_id),
        kind=kind,
        target=_str(d, kind, what) if kind in ("tcp", "http") else "",
        args=args,
        method=_str(d, "method", what) or "GET",
        header={k: list(v) if isinstance(v, list) else [str(v)] for k, v in header.items()},
        interval=interval,
        timeout=timeout,
        ttl=ttl,
        notes=_str(d, "notes", what),
        service_id=service_id,
        status=status,
        deregister_critical_after=_duration(d, "deregistercriticalserviceafter", what),
        tls_skip_verify=bool(d.get("tlsskipverify", False)),
    )


def parse_service(body: Any, what: str = "service") -> ServiceDef:
    d = normalized(body, what)
    name = _str(d, "name", what) or _str(d, "service", what)
    if not name:
        raise ValidationError(Problem(f"{what}.Name", "a service needs a name"))
    service_id = _str(d, "id", what) or name
    port = d.get("port", 0) or 0
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValidationError(Problem(f"{what}.Port", "expected a port number 0-65535"))
    raw_checks: list[Any] = []
    if d.get("check"):
        raw_checks.append(d["check"])
    extra = d.get("checks") or []
    if not isinstance(extra, list):
        raise ValidationError(Problem(f"{what}.Checks", "expected a list of checks"))
    raw_checks.extend(extra)
    checks = []
    for i, raw in enumerate(raw_checks):
        suffix = f":{i + 1}" if len(raw_checks) > 1 else ""
        checks.append(
            parse_check(raw, f"{what}.Checks[{i}]", service_id, f"service:{service_id}{suffix}")
        )
    return ServiceDef(
        service_id=service_id,
        name=name,
        tags=_str_list(d, "tags", what),
        address=_str(d, "address", what),
        port=port,
        meta=_str_map(d, "meta", what),
        enable_tag_override=bool(d.get("enabletagoverride", False)),
        checks=tuple(checks),
    )
