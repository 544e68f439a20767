"""State backends: where Steppe's state lives and how it is replicated.

``MemoryBackend`` serves ``agent -dev`` and tests; the etcd backend serves real
clusters. Both implement :class:`Backend`, so the state store above them does not
know which one it has.
"""

from steppe.backend._base import (
    Backend,
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Op,
    Put,
    TxnResult,
    compare_holds,
)
from steppe.backend._election import Election, keep_alive
from steppe.backend._etcd import EtcdBackend
from steppe.backend._memory import MemoryBackend

__all__ = [
    "Backend",
    "Compare",
    "Delete",
    "Election",
    "EtcdBackend",
    "Event",
    "Get",
    "KeyValue",
    "MemoryBackend",
    "Op",
    "Put",
    "TxnResult",
    "compare_holds",
    "keep_alive",
]
