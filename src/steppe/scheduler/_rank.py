"""Scores for a feasible node; each lies in [-1, 1] and the final score is their mean,
as in Nomad's ranking iterators.

- bin-packing: Nomad's BestFit v3, ``20 - (10^free_cpu + 10^free_mem)``, over 18;
- job anti-affinity: ``-(collisions + 1) / count`` when the node already runs the group;
- node reschedule penalty: ``-1`` on the node a rescheduled allocation failed on;
- affinity: the weights of the matching affinities over the sum of all their weights;
- spread: how far the node's attribute value is below its desired share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from steppe.scheduler._feasible import Resolver, check_operand, resolver
from steppe.scheduler._nodes import ReadyNodes
from steppe.structs import Affinity, Node, Spread

IMPLICIT_TARGET = "*"


def binpack_score(cpu: int, cpu_cap: int, memory: int, memory_cap: int) -> float:
    """``cpu``/``memory`` are the node's use including the allocation being placed."""
    free_cpu = 1.0 - cpu / cpu_cap if cpu_cap > 0 else 0.0
    free_mem = 1.0 - memory / memory_cap if memory_cap > 0 else 0.0
    score: float = 20.0 - (math.pow(10.0, free_cpu) + math.pow(10.0, free_mem))
    return min(max(score, 0.0), 18.0) / 18.0


class AffinityScore:
    def __init__(self, affinities: Iterable[Affinity]) -> None:
        self.rules: list[tuple[Resolver, Resolver, str, int]] = [
            (resolver(a.l_target), resolver(a.r_target), a.operand, a.weight) for a in affinities
        ]
        self.total = sum(abs(w) for *_, w in self.rules) or 1

    def __bool__(self) -> bool:
        return bool(self.rules)

    def score(self, node: Node) -> float:
        got = 0
        for left, right, operand, weight in self.rules:
            if check_operand(operand, left(node), right(node)):
                got += weight
        return got / self.total


class SpreadScore:
    """One ``spread`` block for one task group; counts are kept up to date by the
    caller as allocations are placed and stopped."""

    def __init__(self, spread: Spread, weight_share: float, count: int, values: set[str]) -> None:
        self.attribute = spread.attribute
        self.value_of = resolver(spread.attribute)
        self.share = weight_share
        self.counts: dict[str, int] = {}
        self.desired: dict[str, float] = {}
        if spread.spread_target:
            total_pct = 0
            for target in spread.spread_target:
                self.desired[target.value] = target.percent / 100.0 * count
                total_pct += target.percent
            if total_pct < 100:
                self.desired[IMPLICIT_TARGET] = (100 - total_pct) / 100.0 * count
        elif values:
            even = count / len(values)
            self.desired = dict.fromkeys(values, even)

    def add(self, node: Node, delta: int = 1) -> None:
        value = self.value_of(node)
        if value is not None:
            self.counts[value] = self.counts.get(value, 0) + delta

    def score(self, node: Node) -> float:
        value = self.value_of(node)
        if value is None:
            return -self.share
        desired = self.desired.get(value, self.desired.get(IMPLICIT_TARGET, 0.0))
        if desired <= 0:
            return -self.share
        return (desired - self.counts.get(value, 0)) / desired * self.share


def spread_scores(spreads: list[Spread], count: int, ready: ReadyNodes | None) -> list[SpreadScore]:
    """Spreads without targets aim at an even share over the values the job's ready
    nodes have."""
    total_weight = sum(s.weight for s in spreads) or 1
    result = []
    for spread in spreads:
        values: set[str] = set()
        if spread.spread_target or ready is None:
            pass
        elif spread.attribute == "${node.datacenter}":
            values = set(ready.by_dc)
        else:
            value_of = resolver(spread.attribute)
            for node in ready.nodes:
                value = value_of(node)
                if value is not None:
                    values.add(value)
        result.append(SpreadScore(spread, spread.weight / total_weight, count, values))
    return result
