"""Feasibility: can this node run this task group at all, resources aside?

Checks datacenters, drivers and constraints. Each check answers with the reason a
node was filtered, in the words Nomad puts in ``ConstraintFiltered`` (the constraint
itself, ``"missing drivers"``), so ``job status`` can say why nothing was placed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from steppe.scheduler._versions import version_matches
from steppe.structs import Constraint, Job, Node, TaskGroup

MISSING_DRIVERS = "missing drivers"
DISTINCT_OPERANDS = ("distinct_hosts", "distinct_property")

Resolver = Callable[[Node], "str | None"]


class _Comparable(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...
    def __le__(self, other: Any, /) -> bool: ...
    def __gt__(self, other: Any, /) -> bool: ...
    def __ge__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Comparable)


def datacenter_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """Nomad accepts globs in ``datacenters`` (``"*"``, ``"eu-*"``)."""
    exact = {p for p in patterns if not any(c in p for c in "*?[")}
    globs = [p for p in patterns if p not in exact]
    if "*" in globs:
        return lambda dc: True

    def match(dc: str) -> bool:
        return dc in exact or any(fnmatch.fnmatchcase(dc, g) for g in globs)

    return match


def resolver(target: str) -> Resolver:
    """Turns ``${attr.kernel.name}``, ``${meta.rack}``, ``${node.datacenter}``... into a
    function of the node; anything else is a literal."""
    if not (target.startswith("${") and target.endswith("}")):
        return lambda node: target
    name = target[2:-1]
    fixed: dict[str, Resolver] = {
        "node.unique.id": lambda n: n.id,
        "node.unique.name": lambda n: n.name,
        "node.datacenter": lambda n: n.datacenter,
        "node.class": lambda n: n.node_class,
        "node.pool": lambda n: n.node_pool,
    }
    if name in fixed:
        return fixed[name]
    if name.startswith("attr."):
        key = name[5:]
        return lambda n: n.attributes.get(key)
    if name.startswith("meta."):
        key = name[5:]
        return lambda n: n.meta.get(key)
    return lambda n: None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _ordered(op: str, left: str, right: str) -> bool:
    """Numbers compare as numbers, anything else lexically (Nomad's rule)."""
    ln, rn = _number(left), _number(right)
    if ln is not None and rn is not None:
        return _compare(op, ln, rn)
    return _compare(op, left, right)


def _compare(op: str, a: T, b: T) -> bool:
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _set(text: str) -> set[str]:
    return {p.strip() for p in text.split(",")}


def check_operand(operand: str, left: str | None, right: str | None) -> bool:
    """Nomad's operator semantics: most need both sides set; ``!=`` and
    ``is_not_set`` hold when the attribute is missing."""
    if operand in ("!=", "not"):
        return left != right
    if operand == "is_set":
        return left is not None
    if operand == "is_not_set":
        return left is None
    if left is None or right is None:
        return False
    if operand in ("=", "==", "is"):
        return left == right
    if operand in ("<", "<=", ">", ">="):
        return _ordered(operand, left, right)
    if operand in ("version", "semver"):
        return version_matches(left, right)
    if operand == "regexp":
        pattern = _regex(right)
        return pattern is not None and pattern.search(left) is not None
    if operand in ("set_contains", "set_contains_all"):
        return _set(right) <= _set(left)
    if operand == "set_contains_any":
        return bool(_set(right) & _set(left))
    return False


class ConstraintCheck:
    __slots__ = ("constraint", "left", "name", "operand", "right")

    def __init__(self, constraint: Constraint) -> None:
        self.constraint = constraint
        self.name = str(constraint)
        self.operand = constraint.operand
        self.left = resolver(constraint.l_target)
        self.right = resolver(constraint.r_target)

    def holds(self, node: Node) -> bool:
        return check_operand(self.operand, self.left(node), self.right(node))


def group_constraints(job: Job, tg: TaskGroup) -> list[Constraint]:
    found = list(job.constraints) + list(tg.constraints)
    for task in tg.tasks:
        found.extend(task.constraints)
    return found


def _driver_ok(node: Node, driver: str) -> bool:
    info = node.drivers.get(driver)
    if info is not None:
        return info.detected and info.healthy
    return node.attributes.get(f"driver.{driver}", "").lower() in ("1", "true")


_VERDICTS: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, tuple[Node, str]]] = {}
"""Verdicts per set of checks, per node, kept across passes: jobs with the same
constraints share them, and a verdict holds as long as the node object is the same
(snapshots share unchanged rows)."""
_VERDICTS_MAX = 1_000


class Feasibility:
    """Per task group, memoised per node for the whole scheduling pass."""

    def __init__(self, job: Job, tg: TaskGroup) -> None:
        self.drivers = sorted({t.driver for t in tg.tasks if t.driver})
        self.checks = [
            ConstraintCheck(c)
            for c in group_constraints(job, tg)
            if c.operand not in DISTINCT_OPERANDS
        ]
        key = (tuple(self.drivers), tuple(c.name for c in self.checks))
        cache = _VERDICTS.get(key)
        if cache is None:
            if len(_VERDICTS) >= _VERDICTS_MAX:
                _VERDICTS.clear()
            cache = _VERDICTS[key] = {}
        self._cache = cache

    def reason(self, node: Node) -> str:
        """Empty when feasible, else why the node was filtered."""
        cached = self._cache.get(node.id)
        if cached is not None and cached[0] is node:
            return cached[1]
        reason = ""
        for driver in self.drivers:
            if not _driver_ok(node, driver):
                reason = MISSING_DRIVERS
                break
        else:
            for check in self.checks:
                if not check.holds(node):
                    reason = check.name
                    break
        self._cache[node.id] = (node, reason)
        return reason
