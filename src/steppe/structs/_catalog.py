"""The service catalog, KV store and sessions: Consul's JSON shapes.

Stored rows and API answers are the same structs wherever Consul's shapes allow it, so an
answer is one msgspec encode of what the state store already holds. ``CreateIndex`` and
``ModifyIndex`` are stamped by the state store from backend revisions on decode.
"""

from __future__ import annotations

import msgspec

from steppe.structs._naming import nomad_names

_NAMES = nomad_names()

HEALTH_PASSING = "passing"
HEALTH_WARNING = "warning"
HEALTH_CRITICAL = "critical"
HEALTH_MAINT = "maintenance"
HEALTH_STATUSES = (HEALTH_PASSING, HEALTH_WARNING, HEALTH_CRITICAL)

SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"

SESSION_RELEASE = "release"
SESSION_DELETE = "delete"


class _Base(msgspec.Struct, frozen=True, rename=_NAMES, kw_only=True):
    pass


class KVEntry(_Base, frozen=True):
    """Consul's ``DirEntry``. ``Session`` is omitted when no session holds the key."""

    lock_index: int = 0
    key: str = ""
    flags: int = 0
    value: bytes | None = None
    session: str | msgspec.UnsetType = msgspec.UNSET
    create_index: int = 0
    modify_index: int = 0


class ServiceCheckRef(_Base, frozen=True):
    id: str = ""
    namespace: str = ""


class Session(_Base, frozen=True):
    id: str = ""
    name: str = ""
    node: str = ""
    lock_delay: int = 15_000_000_000
    """Nanoseconds, as Consul's JSON has it."""
    behavior: str = SESSION_RELEASE
    ttl: str = ""
    node_checks: tuple[str, ...] = ()
    service_checks: tuple[ServiceCheckRef, ...] | None = None
    create_index: int = 0
    modify_index: int = 0


class Weights(_Base, frozen=True):
    passing: int = 1
    warning: int = 1


class CatalogNode(_Base, frozen=True):
    id: str = ""
    node: str = ""
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = msgspec.field(default_factory=dict)
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


class AgentService(_Base, frozen=True):
    """A service instance: the ``Service`` of health answers and of agent listings."""

    id: str = ""
    service: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    port: int = 0
    weights: Weights = msgspec.field(default_factory=Weights)
    enable_tag_override: bool = False
    datacenter: str = ""
    create_index: int = 0
    modify_index: int = 0


class ServiceRow(_Base, frozen=True):
    """How a service instance is stored: keyed ``node/service-id``."""

    node: str = ""
    service: AgentService = msgspec.field(default_factory=AgentService)
    create_index: int = 0
    modify_index: int = 0


class HealthCheck(_Base, frozen=True):
    node: str = ""
    check_id: str = ""
    name: str = ""
    status: str = HEALTH_CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: str = ""
    timeout: str = ""
    definition: dict[str, str] = msgspec.field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


class CatalogService(_Base, frozen=True):
    """One row of ``/v1/catalog/service/:name``: node and service fields flattened."""

    id: str = ""
    node: str = ""
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = msgspec.field(default_factory=dict)
    node_meta: dict[str, str] = msgspec.field(default_factory=dict)
    service_kind: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    service_address: str = ""
    service_weights: Weights = msgspec.field(default_factory=Weights)
    service_meta: dict[str, str] = msgspec.field(default_factory=dict)
    service_port: int = 0
    service_enable_tag_override: bool = False
    create_index: int = 0
    modify_index: int = 0


class ServiceEntry(_Base, frozen=True):
    """One row of ``/v1/health/service/:name``."""

    node: CatalogNode
    service: AgentService
    checks: tuple[HealthCheck, ...] = ()


class NodeServices(_Base, frozen=True):
    """``/v1/catalog/node/:node``."""

    node: CatalogNode
    services: dict[str, AgentService] = msgspec.field(default_factory=dict)


def check_passes_filter(checks: tuple[HealthCheck, ...] | list[HealthCheck]) -> bool:
    """``?passing``: every check passing (warnings excluded, as Consul does)."""
    return all(c.status == HEALTH_PASSING for c in checks)


def has_critical(checks: tuple[HealthCheck, ...] | list[HealthCheck]) -> bool:
    """What DNS excludes: any critical check."""
    return any(c.status == HEALTH_CRITICAL for c in checks)
