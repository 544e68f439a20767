"""The state backend contract: etcd's data model, so that etcd itself can implement it.

A backend is a flat, ordered key space of ``str -> bytes``. Every successful write bumps a
cluster-wide *revision*; each key remembers the revision that created it and the one that
last modified it. Writes are transactions: a list of compares that must all hold, then a
list of operations applied atomically. Watches replay every change from a given revision
on, so a cache fed by ``range`` + ``watch(start_revision=rev + 1)`` never misses one.
Leases give keys a time to live; a key attached to a lapsed lease is deleted.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

CompareTarget = Literal["mod", "create", "version", "value", "lease"]
CompareOp = Literal["==", "!=", "<", ">"]


class KeyValue(msgspec.Struct, frozen=True, gc=False):
    """One key as the backend stores it. A msgspec struct, not a dataclass: every
    server builds one per watched change, and this is ten times cheaper to create."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class Event(msgspec.Struct, frozen=True, gc=False):
    """A change to one key. For deletes, ``kv.value`` is empty and ``kv.mod_revision``
    is the revision of the delete."""

    type: Literal["put", "delete"]
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class Compare:
    """``key``'s ``target`` must stand in relation ``op`` to ``value``.

    A key that does not exist has create/mod revision 0 and version 0, so
    ``Compare(k, "create", "==", 0)`` means "k does not exist yet".
    """

    key: str
    target: CompareTarget
    op: CompareOp
    value: int | bytes

    @staticmethod
    def absent(key: str) -> Compare:
        return Compare(key, "create", "==", 0)

    @staticmethod
    def unchanged_since(key: str, mod_revision: int) -> Compare:
        return Compare(key, "mod", "==", mod_revision)


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Deletes ``key``; with ``prefix=True`` every key starting with it."""

    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    """Reads ``key`` (or a prefix) inside a transaction, at the transaction's revision."""

    key: str
    prefix: bool = False


Op = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    """The store's revision after the transaction (unchanged when nothing was written)."""
    reads: list[list[KeyValue]] = field(default_factory=list)
    """One list per ``Get`` of the branch that ran, in order."""


def compare_holds(kv: KeyValue | None, c: Compare) -> bool:
    """Evaluates a compare against a key's current value (``None``: the key is absent)."""
    actual: int | bytes
    if c.target == "value":
        actual = kv.value if kv else b""
    elif c.target == "create":
        actual = kv.create_revision if kv else 0
    elif c.target == "mod":
        actual = kv.mod_revision if kv else 0
    elif c.target == "version":
        actual = kv.version if kv else 0
    else:
        actual = kv.lease if kv else 0
    expected = c.value
    if type(actual) is not type(expected):
        return False
    if c.op == "==":
        return actual == expected
    if c.op == "!=":
        return actual != expected
    if c.op == "<":
        return actual < expected  # type: ignore[operator]
    return actual > expected  # type: ignore[operator]


class Backend(abc.ABC):
    """Where Steppe's state lives. Implementations: memory (dev, tests) and etcd."""

    max_txn_ops: int = 1_000_000
    """Most operations one transaction may hold; callers batch writes below it."""
    max_txn_bytes: int = 1 << 30
    """Largest encoded transaction the backend accepts (keys + values + overhead)."""
    batch_linger: float = 0.0
    """Seconds a group commit under load may wait for more writes before committing:
    worth it only where each transaction is costly (a quorum write, a watch event per
    server), never in memory."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys under ``prefix`` in key order, and the revision they were read at."""

    @abc.abstractmethod
    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult: ...

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Every change under ``prefix`` from ``start_revision`` on, grouped by revision.

        Raises :class:`~steppe.errors.RevisionCompactedError` when that history is gone;
        the caller re-lists and watches again from the list's revision + 1.
        """

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The newest committed revision, confirmed with the quorum (a linearizable read)."""

    @abc.abstractmethod
    async def lease_grant(self, ttl: float) -> int: ...

    @abc.abstractmethod
    async def lease_keepalive(self, lease_id: int) -> float:
        """Renews a lease; returns its TTL. Raises NotFoundError for an expired lease."""

    @abc.abstractmethod
    async def lease_revoke(self, lease_id: int) -> None:
        """Ends a lease now, deleting its keys. Revoking an unknown lease is not an error."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Drops history older than ``revision``."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections; the default has none."""

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unconditional write; returns the new revision."""
        return (await self.txn([], [Put(key, value, lease)])).revision

    async def delete(self, key: str, prefix: bool = False) -> int:
        return (await self.txn([], [Delete(key, prefix)])).revision
