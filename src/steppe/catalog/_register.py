"""``/v1/catalog/register`` and ``/deregister`` bodies, validated into rows.

These are the low-level catalog writes (Consul's, not the agent's): checks arrive with a
status, nobody runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steppe.catalog._defs import normalized
from steppe.errors import Problem, ValidationError
from steppe.structs import HEALTH_CRITICAL, HEALTH_STATUSES, AgentService, CatalogNode, HealthCheck


@dataclass(frozen=True)
class Registration:
    node: CatalogNode
    service: AgentService | None
    checks: tuple[HealthCheck, ...]
    skip_node_update: bool


def _s(d: dict[str, Any], key: str, what: str) -> str:
    value = d.get(key) or ""
    if not isinstance(value, str):
        raise ValidationError(Problem(f"{what}.{key}", "expected a string"))
    return value


def _smap(d: dict[str, Any], key: str, what: str) -> dict[str, str]:
    value = d.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError(Problem(f"{what}.{key}", "expected an object of strings"))
    return dict(value)


def _check_dc(d: dict[str, Any], datacenter: str) -> None:
    dc = d.get("datacenter") or datacenter
    if dc != datacenter:
        raise ValidationError(Problem("Datacenter", f"No path to datacenter {dc!r}"))


def parse_registration(body: Any, datacenter: str) -> Registration:
    d = normalized(body, "body")
    _check_dc(d, datacenter)
    node_name, address = _s(d, "node", "body"), _s(d, "address", "body")
    if not node_name or not address:
        raise ValidationError(Problem("body", "must provide Node and Address"))
    node = CatalogNode(
        id=_s(d, "id", "body"),
        node=node_name,
        address=address,
        datacenter=datacenter,
        tagged_addresses=_smap(d, "taggedaddresses", "body") or {"lan": address, "wan": address},
        meta=_smap(d, "nodemeta", "body"),
    )
    service = None
    if d.get("service"):
        sd = normalized(d["service"], "Service")
        name = _s(sd, "service", "Service") or _s(sd, "name", "Service")
        if not name:
            raise ValidationError(Problem("Service.Service", "a service needs a name"))
        tags = sd.get("tags") or []
        port = sd.get("port") or 0
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValidationError(Problem("Service.Tags", "expected a list of strings"))
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValidationError(Problem("Service.Port", "expected a port number 0-65535"))
        service = AgentService(
            id=_s(sd, "id", "Service") or name,
            service=name,
            tags=tuple(tags),
            address=_s(sd, "address", "Service"),
            meta=_smap(sd, "meta", "Service"),
            port=port,
            datacenter=datacenter,
        )
    raw_checks = ([d["check"]] if d.get("check") else []) + list(d.get("checks") or [])
    checks = tuple(_parse_check(raw, node_name, f"Checks[{i}]") for i, raw in enumerate(raw_checks))
    return Registration(node, service, checks, bool(d.get("skipnodeupdate")))


def _parse_check(raw: Any, node: str, what: str) -> HealthCheck:
    cd = normalized(raw, what)
    name = _s(cd, "name", what)
    check_id = _s(cd, "checkid", what) or name
    if not check_id:
        raise ValidationError(Problem(what, "a check needs a CheckID or a Name"))
    status = _s(cd, "status", what) or HEALTH_CRITICAL
    if status not in HEALTH_STATUSES:
        raise ValidationError(Problem(f"{what}.Status", f"{status!r} is not a check status"))
    if (_s(cd, "node", what) or node) != node:
        raise ValidationError(Problem(f"{what}.Node", "must be the registered node"))
    return HealthCheck(
        node=node,
        check_id=check_id,
        name=name or check_id,
        status=status,
        notes=_s(cd, "notes", what),
        output=_s(cd, "output", what),
        service_id=_s(cd, "serviceid", what),
        type=_s(cd, "type", what),
    )


def parse_deregistration(body: Any, datacenter: str) -> tuple[str, str, str]:
    d = normalized(body, "body")
    _check_dc(d, datacenter)
    node = _s(d, "node", "body")
    if not node:
        raise ValidationError(Problem("body.Node", "must provide a node"))
    return node, _s(d, "serviceid", "body"), _s(d, "checkid", "body")
