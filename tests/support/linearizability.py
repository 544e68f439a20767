"""A small linearizability checker for Consul-style KV histories (Wing & Gong's search
with Lowe's memoisation), partitioned per key: each key is an independent register, so
a history is linearizable iff each key's sub-history is.

The register's state is ``(value, modify_index)`` or None (no such key). Operations:

- ``read``: a ``?consistent`` GET; its result is ``(value, index)`` or None (404);
- ``write``: a plain PUT of ``value`` (result True);
- ``cas``: ``PUT ?cas=expected`` of ``value``; True if the key's modify index was
  ``expected`` (0: the key did not exist), False otherwise.

Every write must put a value unique in its key's history: that is what ties a written
value to the modify index reads later report with it (a value reported with two
different indexes is itself a violation). A write never seen by a read gets an index no
CAS can name.

An operation whose outcome is unknown (timed out, connection reset: ``complete`` None)
may have taken effect at any moment after its invocation, or never, as Knossos treats
"info" operations; an unknown read constrains nothing and is dropped.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

State = tuple[str, Any] | None


@dataclass(frozen=True)
class Op:
    process: Any
    key: str
    kind: str
    """``read``, ``write`` or ``cas``."""
    invoke: float
    complete: float | None
    """None: the outcome is unknown."""
    value: str | None = None
    expected: int | None = None
    result: Any = None
    """read: ``(value, index)`` or None; write/cas: bool. Ignored when ``complete`` is None."""

    @property
    def known(self) -> bool:
        return self.complete is not None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    key: str | None = None
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def check(history: Iterable[Op]) -> Verdict:
    """Whether the whole history is linearizable; on failure, the first key that is not
    and why."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        if op.kind not in ("read", "write", "cas"):
            raise ValueError(f"unknown operation kind {op.kind!r}")
        if op.known and op.complete is not None and op.complete < op.invoke:
            raise ValueError(f"operation completes before it is invoked: {op}")
        by_key[op.key].append(op)
    for key in sorted(by_key):
        verdict = check_key(key, by_key[key])
        if not verdict:
            return verdict
    return Verdict(True)


def check_key(key: str, ops: list[Op]) -> Verdict:
    indexes: dict[str, Any] = {}
    for op in ops:
        if op.kind == "read" and op.known and op.result is not None:
            value, index = op.result
            if indexes.setdefault(value, index) != index:
                return Verdict(
                    False, key, f"value {value!r} read with indexes {indexes[value]} and {index}"
                )
    written = [op.value for op in ops if op.kind != "read"]
    if len(written) != len(set(written)):
        raise ValueError(f"key {key!r}: written values must be unique")
    for value in written:
        assert value is not None
        indexes.setdefault(value, ("unread", value))
    relevant = sorted((op for op in ops if op.known or op.kind != "read"), key=lambda o: o.invoke)
    search = _Search(relevant, indexes)
    if search.run():
        return Verdict(True, key)
    return Verdict(
        False,
        key,
        f"no linearization of {len(relevant)} operations; the longest linearizable prefix "
        f"covers {search.deepest} of {search.needed} operations with known outcomes",
    )


class _Search:
    def __init__(self, ops: list[Op], indexes: dict[str, Any]) -> None:
        self.ops = ops
        self.indexes = indexes
        self.ends = [op.complete if op.complete is not None else math.inf for op in ops]
        self.needed = sum(1 for op in ops if op.known)
        self.known_mask = sum(1 << i for i, op in enumerate(ops) if op.known)
        self.seen: set[tuple[int, State]] = set()
        self.deepest = 0

    def run(self) -> bool:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 4 * len(self.ops) + 200))
        try:
            return self._search(0, None, 0)
        finally:
            sys.setrecursionlimit(limit)

    def _search(self, done: int, state: State, depth: int) -> bool:
        if done & self.known_mask == self.known_mask:
            return True
        if (done, state) in self.seen:
            return False
        self.seen.add((done, state))
        self.deepest = max(self.deepest, depth)
        # an op can go next only if it was invoked before every pending op completed
        horizon = min(self.ends[i] for i in range(len(self.ops)) if not done >> i & 1)
        for i, op in enumerate(self.ops):
            if op.invoke > horizon:
                break
            if done >> i & 1:
                continue
            after = self._apply(op, state)
            if after is _INVALID:
                continue
            if self._search(done | 1 << i, after, depth + op.known):  # type: ignore[arg-type]
                return True
        return False

    def _apply(self, op: Op, state: State) -> State | object:
        current = state[1] if state is not None else 0
        if op.kind == "read":
            return state if _same(state, op.result) else _INVALID
        assert op.value is not None
        new: State = (op.value, self.indexes[op.value])
        if op.kind == "write":
            return new if not op.known or op.result is True else _INVALID
        matches = current == op.expected
        if not op.known:
            return new if matches else _INVALID  # a failed unknown CAS changes nothing
        if op.result is True:
            return new if matches else _INVALID
        return state if not matches else _INVALID


_INVALID = object()


def _same(state: State, result: Any) -> bool:
    if state is None or result is None:
        return state is None and result is None
    return state[0] == result[0] and state[1] == result[1]
