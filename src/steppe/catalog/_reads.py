"""Catalog and health answers computed from one snapshot: pure, so every endpoint and DNS
read the same consistent picture and blocking queries can recompute them cheaply."""

from __future__ import annotations

from collections.abc import Iterable

from steppe.catalog._tables import CHECKS, NODES, SERVICES, row_id
from steppe.state import StateSnapshot
from steppe.structs import (
    AgentService,
    CatalogNode,
    CatalogService,
    HealthCheck,
    NodeServices,
    ServiceEntry,
    ServiceRow,
    check_passes_filter,
)


def nodes(snap: StateSnapshot) -> list[CatalogNode]:
    rows: Iterable[CatalogNode] = snap.rows(NODES.name)
    return sorted(rows, key=lambda n: n.node)


def node(snap: StateSnapshot, name: str) -> CatalogNode | None:
    found: CatalogNode | None = snap.get(NODES.name, name)
    return found


def services(snap: StateSnapshot) -> dict[str, list[str]]:
    """``/v1/catalog/services``: every service name with the union of its tags."""
    out: dict[str, set[str]] = {}
    for row in snap.rows(SERVICES.name):
        out.setdefault(row.service.service, set()).update(row.service.tags)
    return {name: sorted(tags) for name, tags in sorted(out.items())}


def _instances(snap: StateSnapshot, name: str, tag: str | None) -> list[ServiceRow]:
    rows: list[ServiceRow] = snap.by_index(SERVICES.name, "name", name)
    if tag:
        rows = [r for r in rows if tag in r.service.tags]
    return sorted(rows, key=lambda r: (r.node, r.service.id))


def _service(row: ServiceRow) -> AgentService:
    s = row.service
    from msgspec.structs import replace

    return replace(s, create_index=row.create_index, modify_index=row.modify_index)


def service_nodes(snap: StateSnapshot, name: str, tag: str | None = None) -> list[CatalogService]:
    out = []
    for row in _instances(snap, name, tag):
        n = node(snap, row.node) or CatalogNode(node=row.node)
        s = row.service
        out.append(
            CatalogService(
                id=n.id,
                node=n.node,
                address=n.address,
                datacenter=n.datacenter,
                tagged_addresses=n.tagged_addresses,
                node_meta=n.meta,
                service_id=s.id,
                service_name=s.service,
                service_tags=s.tags,
                service_address=s.address,
                service_weights=s.weights,
                service_meta=s.meta,
                service_port=s.port,
                service_enable_tag_override=s.enable_tag_override,
                create_index=row.create_index,
                modify_index=row.modify_index,
            )
        )
    return out


def node_services(snap: StateSnapshot, name: str) -> NodeServices | None:
    n = node(snap, name)
    if n is None:
        return None
    rows: list[ServiceRow] = snap.by_index(SERVICES.name, "node", name)
    return NodeServices(node=n, services={r.service.id: _service(r) for r in rows})


def node_checks(snap: StateSnapshot, name: str) -> list[HealthCheck]:
    checks: list[HealthCheck] = snap.by_index(CHECKS.name, "node", name)
    return sorted(checks, key=lambda c: c.check_id)


def instance_checks(snap: StateSnapshot, row: ServiceRow) -> tuple[HealthCheck, ...]:
    """The node's own checks and the instance's: all that decide its health."""
    return tuple(c for c in node_checks(snap, row.node) if c.service_id in ("", row.service.id))


def health_service(
    snap: StateSnapshot, name: str, tag: str | None = None, passing: bool = False
) -> list[ServiceEntry]:
    out = []
    for row in _instances(snap, name, tag):
        checks = instance_checks(snap, row)
        if passing and not check_passes_filter(checks):
            continue
        n = node(snap, row.node) or CatalogNode(node=row.node)
        out.append(ServiceEntry(node=n, service=_service(row), checks=checks))
    return out


def service_checks(snap: StateSnapshot, name: str) -> list[HealthCheck]:
    checks: Iterable[HealthCheck] = snap.rows(CHECKS.name)
    return sorted((c for c in checks if c.service_name == name), key=lambda c: (c.node, c.check_id))


def checks_in_state(snap: StateSnapshot, state: str) -> list[HealthCheck]:
    checks: Iterable[HealthCheck] = snap.rows(CHECKS.name)
    return sorted(
        (c for c in checks if state == "any" or c.status == state),
        key=lambda c: (c.node, c.check_id),
    )


def check(snap: StateSnapshot, node_name: str, check_id: str) -> HealthCheck | None:
    found: HealthCheck | None = snap.get(CHECKS.name, row_id(node_name, check_id))
    return found
