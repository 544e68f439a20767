"""Where the catalog lives in its datacenter's backend, and how rows are keyed.

The catalog store is separate from the scheduler's: in a cluster it is the datacenter's
etcd, in ``agent -dev`` the same in-memory backend under another root. Two marker tables
hold nothing but lease-bound keys: ``session_ttl`` (a TTL session is alive while its marker
is) and ``alive`` (an agent is reachable while it keeps its marker's lease renewed).
"""

from __future__ import annotations

from steppe.state import TableSpec
from steppe.structs import CatalogNode, HealthCheck, KVEntry, ServiceRow, Session

KV = TableSpec("kv", "kv/", KVEntry, indexes={"session": lambda e: e.session or None})
NODES = TableSpec("cnodes", "nodes/", CatalogNode)
SERVICES = TableSpec(
    "services",
    "services/",
    ServiceRow,
    indexes={"name": lambda r: r.service.service, "node": lambda r: r.node},
)
CHECKS = TableSpec("checks", "checks/", HealthCheck, indexes={"node": lambda c: c.node})
SESSIONS = TableSpec("sessions", "sessions/", Session, indexes={"node": lambda s: s.node})
SESSION_TTL = TableSpec("session_ttl", "session_ttl/", int, stamp_indexes=False)
ALIVE = TableSpec("alive", "alive/", int, stamp_indexes=False)

CATALOG_TABLES = (KV, NODES, SERVICES, CHECKS, SESSIONS, SESSION_TTL, ALIVE)
CATALOG_READ = ("cnodes", "services", "checks")
"""Tables a catalog or health answer depends on."""


def catalog_root(datacenter: str) -> str:
    return f"/steppe-catalog/{datacenter}/"


def row_id(node: str, item_id: str) -> str:
    return f"{node}/{item_id}"
