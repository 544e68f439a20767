"""The service catalog, health checks, KV store and sessions of one datacenter.

::

    store = StateStore(backend, CATALOG_TABLES, catalog_root("dc1"))
    await store.start()
    catalog = CatalogServer(store, "dc1", "node-1")       # writes, reads, session reaper
    await catalog.start()
    agent = LocalAgent(catalog, "node-1", "10.0.0.5")      # local services, checks, anti-entropy
    await agent.start()
    app = steppe.api.consul.build_consul_app(catalog, agent)
"""

from steppe.catalog import _reads as reads
from steppe.catalog._agent import LocalAgent
from steppe.catalog._checks import CheckRunner
from steppe.catalog._defs import CheckDef, ServiceDef, parse_check, parse_duration, parse_service
from steppe.catalog._dns_view import CatalogDNSView
from steppe.catalog._kv import MAX_VALUE_BYTES, KVWrite
from steppe.catalog._server import CatalogServer
from steppe.catalog._sessions import SessionLimits, parse_session
from steppe.catalog._tables import CATALOG_READ, CATALOG_TABLES, catalog_root
from steppe.catalog._txn import MAX_TXN_OPS, TooManyOps, parse_txn

__all__ = [
    "CATALOG_READ",
    "CATALOG_TABLES",
    "MAX_TXN_OPS",
    "MAX_VALUE_BYTES",
    "CatalogDNSView",
    "CatalogServer",
    "CheckDef",
    "CheckRunner",
    "KVWrite",
    "LocalAgent",
    "ServiceDef",
    "SessionLimits",
    "TooManyOps",
    "catalog_root",
    "parse_check",
    "parse_duration",
    "parse_service",
    "parse_session",
    "parse_txn",
    "reads",
]
