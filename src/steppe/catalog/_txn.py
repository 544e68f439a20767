"""``/v1/txn``: many KV operations, all or nothing, as ONE backend transaction.

Operations are evaluated in order against the cached snapshot plus the transaction's own
earlier writes; if any fails nothing is written and every failure is reported with its
index. Otherwise the final state of each touched key becomes one put or delete, guarded by
compares on every revision the evaluation relied on, and a lost race re-evaluates.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import msgspec

from steppe.backend import Compare, Delete, Op, Put
from steppe.catalog._kv import MAX_VALUE_BYTES, KVWrite, KVWriter
from steppe.catalog._tables import SESSIONS
from steppe.errors import ConflictError, Problem, ValidationError
from steppe.state import StateSnapshot, StateStore
from steppe.structs import KVEntry, to_msgpack

MAX_TXN_OPS = 64
VERBS = (
    "set", "cas", "lock", "unlock", "get", "get-tree", "check-index", "check-session",
    "check-not-exists", "delete", "delete-tree", "delete-cas",
)  # fmt: skip


class TooManyOps(ValidationError):
    pass


@dataclass(frozen=True, slots=True)
class TxnOp:
    verb: str
    key: str
    value: bytes | None = None
    flags: int = 0
    index: int = 0
    session: str = ""


def parse_txn(body: Any, max_ops: int) -> list[TxnOp]:
    if not isinstance(body, list):
        raise ValidationError(Problem("body", "expected a JSON list of operations"))
    if len(body) > max_ops:
        raise TooManyOps(
            Problem("body", f"transaction has {len(body)} operations; the limit is {max_ops}")
        )
    return [_parse_op(raw, f"[{i}]") for i, raw in enumerate(body)]


def _parse_op(raw: Any, what: str) -> TxnOp:
    kv = raw.get("KV") if isinstance(raw, dict) else None
    if not isinstance(kv, dict):
        raise ValidationError(Problem(what, 'only KV operations are supported: {"KV": {...}}'))
    verb, key = kv.get("Verb"), kv.get("Key", "")
    if verb not in VERBS:
        raise ValidationError(Problem(f"{what}.KV.Verb", f"unknown verb {verb!r}"))
    if not isinstance(key, str) or (not key and verb not in ("get-tree", "delete-tree")):
        raise ValidationError(Problem(f"{what}.KV.Key", "missing key"))
    value = None
    if kv.get("Value") is not None:
        try:
            value = base64.b64decode(kv["Value"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ValidationError(Problem(f"{what}.KV.Value", "not valid base64")) from exc
        if len(value) > MAX_VALUE_BYTES:
            raise ValidationError(Problem(f"{what}.KV.Value", "value over 512 KB"))
    numbers = {k: kv.get(k, 0) for k in ("Flags", "Index")}
    for name, number in numbers.items():
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ValidationError(Problem(f"{what}.KV.{name}", "expected a non-negative integer"))
    session = kv.get("Session", "") or ""
    if not isinstance(session, str):
        raise ValidationError(Problem(f"{what}.KV.Session", "expected a string"))
    if verb in ("lock", "unlock", "check-session") and not session:
        raise ValidationError(Problem(f"{what}.KV.Session", f"{verb} needs a session"))
    return TxnOp(verb, key, value, numbers["Flags"], numbers["Index"], session)


@dataclass
class _Eval:
    snap: StateSnapshot
    overlay: dict[str, KVEntry | None] = field(default_factory=dict)
    base: dict[str, int] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    results: list[tuple[str, bool]] = field(default_factory=list)
    """(key, with value) per result, filled with indexes after the commit."""
    errors: list[tuple[int, str]] = field(default_factory=list)

    def current(self, key: str) -> tuple[KVEntry | None, int | None]:
        """The key's entry and revision (None: written earlier in this transaction)."""
        if key not in self.base:
            self.base[key] = self.snap.revision_of("kv", key)
        if key in self.overlay:
            return self.overlay[key], None
        entry: KVEntry | None = self.snap.get("kv", key)
        return entry, self.base[key]

    def prefix_keys(self, prefix: str) -> list[str]:
        keys = {k for k in self.snap.table("kv").rows if k.startswith(prefix)}
        keys |= {k for k, v in self.overlay.items() if k.startswith(prefix) and v is not None}
        return sorted(k for k in keys if self.current(k)[0] is not None)


class TxnRunner:
    def __init__(self, store: StateStore, writer: KVWriter) -> None:
        self._store = store
        self._writer = writer

    async def run(self, ops: list[TxnOp]) -> tuple[list[KVEntry], list[tuple[int, str]]]:
        """Results per op that has one, or the errors (nothing written)."""
        for _ in range(20):
            ev = _Eval(self._store.snapshot())
            for i, op in enumerate(ops):
                problem = self._apply(ev, op)
                if problem:
                    ev.errors.append((i, problem))
            if ev.errors:
                return [], ev.errors
            revision = await self._commit(ev)
            if revision is not None:
                return self._results(ev, revision), []
            await self._store.wait_for_revision(await self._store.backend.current_revision())
        raise ConflictError("txn: too many concurrent writers, retry")

    def _apply(self, ev: _Eval, op: TxnOp) -> str:
        cur, rev = ev.current(op.key) if op.key else (None, 0)
        verb = op.verb
        if verb in ("cas", "check-index", "delete-cas") and rev != op.index:
            return f"current modify index for {op.key!r} does not match {op.index}"
        if verb == "check-not-exists" and cur is not None:
            return f"key {op.key!r} exists"
        if verb == "check-session" and (cur is None or cur.session != op.session):
            return f"key {op.key!r} is not locked by session {op.session!r}"
        if verb in ("get", "check-index", "check-session") and cur is None:
            return f"key {op.key!r} doesn't exist"
        if verb in ("set", "cas", "lock", "unlock"):
            return self._write(ev, op, cur)
        if verb in ("delete", "delete-cas"):
            ev.overlay[op.key] = None
        elif verb == "delete-tree":
            for key in ev.prefix_keys(op.key):
                ev.overlay[key] = None
        elif verb == "get":
            ev.results.append((op.key, True))
        elif verb == "get-tree":
            ev.results.extend((k, True) for k in ev.prefix_keys(op.key))
        return ""

    def _write(self, ev: _Eval, op: TxnOp, cur: KVEntry | None) -> str:
        acquire = op.session if op.verb == "lock" else ""
        release = op.session if op.verb == "unlock" else ""
        if acquire:
            if ev.snap.get(SESSIONS.name, acquire) is None:
                return f"invalid session {acquire!r}"
            ev.sessions.add(acquire)
        entry = self._writer.decide(
            KVWrite(op.key, op.value, op.flags, None, acquire, release), cur
        )
        if entry is None:
            return f"failed to {op.verb} key {op.key!r}"
        ev.overlay[op.key] = entry
        ev.results.append((op.key, False))
        return ""

    async def _commit(self, ev: _Eval) -> int | None:
        compares = [
            Compare(self._writer.backend_key(k), "mod", "==", rev) for k, rev in ev.base.items()
        ]
        compares += [
            Compare(self._store.key(SESSIONS.name, s), "create", ">", 0) for s in ev.sessions
        ]
        ops: list[Op] = []
        for key, entry in ev.overlay.items():
            bkey = self._writer.backend_key(key)
            ops.append(Delete(bkey) if entry is None else Put(bkey, to_msgpack(entry)))
        if len(ops) > self._store.backend.max_txn_ops:
            raise TooManyOps(Problem("body", "transaction touches too many keys"))
        if not ops:
            return ev.snap.index
        result = await self._store.backend.txn(compares, ops)
        if not result.succeeded:
            return None
        await self._store.wait_for_revision(result.revision)
        return result.revision

    def _results(self, ev: _Eval, revision: int) -> list[KVEntry]:
        out = []
        for key, with_value in ev.results:
            entry, base = ev.overlay.get(key), ev.base.get(key, 0)
            if key not in ev.overlay:
                entry = ev.snap.get("kv", key)
            elif entry is not None:
                stored: KVEntry | None = ev.snap.get("kv", key)
                created = stored.create_index if stored and base else revision
                entry = msgspec.structs.replace(entry, create_index=created, modify_index=revision)
            if entry is None:
                continue
            out.append(entry if with_value else msgspec.structs.replace(entry, value=None))
        return out
