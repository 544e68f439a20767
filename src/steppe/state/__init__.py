"""Typed state tables over a backend: snapshots to read, transactions to write.

Usage::

    store = StateStore(backend, SCHEDULER_TABLES)
    await store.start()
    snap = store.snapshot()               # immutable; never changes under you
    await store.commit(writes.upsert_node(keys, node))
"""

from steppe.state import _writes as writes
from steppe.state._snapshot import StateSnapshot, TableData
from steppe.state._store import IndexTracker, StateStore, Txn
from steppe.state._tables import (
    ALLOCS,
    EVALS,
    JOB_VERSIONS,
    JOBS,
    NODE_USAGE,
    NODES,
    SCHEDULER_TABLES,
    SERVERS,
    TableSpec,
)
from steppe.state._writes import Keys

__all__ = [
    "ALLOCS",
    "EVALS",
    "JOBS",
    "JOB_VERSIONS",
    "NODES",
    "NODE_USAGE",
    "SCHEDULER_TABLES",
    "SERVERS",
    "IndexTracker",
    "Keys",
    "StateSnapshot",
    "StateStore",
    "TableData",
    "TableSpec",
    "Txn",
    "writes",
]
