"""Choosing a node for one allocation: walk a shuffled node list from where the last
placement stopped, keep the first ``limit`` feasible nodes that fit (Nomad's limit
iterator: at least 2, log2 of the node count for service jobs), score them, take the
best. A placement therefore costs about the same on 10 nodes as on 10,000.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from steppe.scheduler._context import Pass, Usage
from steppe.scheduler._feasible import Feasibility, group_constraints, resolver
from steppe.scheduler._fit import DIM_CPU, DIM_DYNAMIC_PORT, DIM_MEMORY, DIM_PORT
from steppe.scheduler._nodes import ReadyNodes
from steppe.scheduler._ports import dynamic_count, static_ports
from steppe.scheduler._rank import AffinityScore, SpreadScore, binpack_score, spread_scores
from steppe.structs import (
    AllocMetric,
    Job,
    NetworkResource,
    Node,
    Spread,
    TaskGroup,
)

_pow = math.pow
SKIP_SCORE_THRESHOLD = 0.0
MAX_SKIP = 3
DATACENTER = "${node.datacenter}"
WIDE_LIMIT = 100
"""Affinities and spreads over arbitrary attributes need a wider look than log2(n):
at least this many nodes, or the group's count if larger (as Nomad does)."""


def group_networks(tg: TaskGroup) -> tuple[NetworkResource, ...]:
    nets = tg.networks
    for task in tg.tasks:
        nets = nets + task.resources.networks
    return nets


def effective_spreads(job: Job, tg: TaskGroup) -> list[Spread]:
    """The job's and group's spreads; with none, a job listing several datacenters
    spreads evenly over them (what users of multi-datacenter jobs expect)."""
    spreads = list(job.spreads) + list(tg.spreads)
    if not spreads and len(job.datacenters) > 1:
        spreads = [Spread(attribute=DATACENTER, weight=50)]
    return spreads


class _DistinctProperty:
    def __init__(self, name: str, attribute: str, limit: int, group: str | None) -> None:
        self.name = name
        self.value_of = resolver(attribute)
        self.limit = limit
        self.group = group
        self.counts: dict[str, int] = {}


class GroupAsk:
    """What one task group needs and what the job already holds, computed once per
    pass and updated as placements are made."""

    def __init__(
        self, job: Job, tg: TaskGroup, ready: ReadyNodes | None, held: Iterable[Node]
    ) -> None:
        self.job = job
        self.tg = tg
        self.count = max(tg.count, 1)
        self.cpu = sum(t.resources.cpu for t in tg.tasks)
        self.memory = sum(t.resources.memory_mb for t in tg.tasks)
        nets = group_networks(tg)
        self.static_ports = static_ports(nets)
        self.dynamic_ports = dynamic_count(nets)
        self.feasibility = Feasibility(job, tg)
        self.tg_counts: dict[str, int] = {}
        self.distinct_hosts = False
        self.distinct: list[_DistinctProperty] = []
        for c in group_constraints(job, tg):
            if c.operand == "distinct_hosts" and c.r_target.lower() not in ("false", "0"):
                self.distinct_hosts = True
            elif c.operand == "distinct_property":
                limit = int(c.r_target) if c.r_target.isdigit() else 1
                self.distinct.append(_DistinctProperty(str(c), c.l_target, limit, None))
        spreads = effective_spreads(job, tg)
        self.spreads: list[SpreadScore] = spread_scores(spreads, self.count, ready)
        self.affinity = AffinityScore(
            list(job.affinities) + list(tg.affinities) + [a for t in tg.tasks for a in t.affinities]
        )
        self.wide = bool(self.affinity) or any(s.attribute != DATACENTER for s in spreads)
        for node in held:
            self.record(node)

    def record(self, node: Node, delta: int = 1) -> None:
        self.tg_counts[node.id] = self.tg_counts.get(node.id, 0) + delta
        for spread in self.spreads:
            spread.add(node, delta)
        for prop in self.distinct:
            value = prop.value_of(node)
            if value is not None:
                prop.counts[value] = prop.counts.get(value, 0) + delta

    def blocked_by_distinct(self, node: Node) -> str:
        if self.distinct_hosts and self.tg_counts.get(node.id, 0) > 0:
            return "distinct_hosts"
        for prop in self.distinct:
            value = prop.value_of(node)
            if value is None or prop.counts.get(value, 0) >= prop.limit:
                return prop.name
        return ""

    def exhausted(self, usage: Usage) -> str:
        if usage.cpu + self.cpu > usage.cpu_cap:
            return DIM_CPU
        if usage.memory + self.memory > usage.memory_cap:
            return DIM_MEMORY
        for port in self.static_ports:
            if port in usage.ports:
                return DIM_PORT
        if self.dynamic_ports:
            node = usage.node
            span = node.max_dynamic_port - node.min_dynamic_port + 1
            if span - len(usage.ports) < self.dynamic_ports:
                return DIM_DYNAMIC_PORT
        return ""

    def rank(self, usage: Usage, penalty: frozenset[str]) -> float:
        """The final score alone: the hot path, called for every candidate."""
        node = usage.node
        cpu_cap, memory_cap = usage.cpu_cap, usage.memory_cap
        if cpu_cap > 0 and memory_cap > 0:
            # binpack_score, inlined: this line runs for every candidate of every placement
            free_cpu = 1.0 - (usage.cpu + self.cpu) / cpu_cap
            free_mem = 1.0 - (usage.memory + self.memory) / memory_cap
            total = min(max(20.0 - (_pow(10.0, free_cpu) + _pow(10.0, free_mem)), 0.0), 18.0)
            total /= 18.0
        else:
            total = binpack_score(
                usage.cpu + self.cpu, cpu_cap, usage.memory + self.memory, memory_cap
            )
        scores = 1
        collisions = self.tg_counts.get(node.id)
        if collisions:
            total -= (collisions + 1) / self.count
            scores += 1
        if penalty and node.id in penalty:
            total -= 1.0
            scores += 1
        if self.affinity:
            affinity = self.affinity.score(node)
            if affinity:
                total += affinity
                scores += 1
        if self.spreads:
            for spread in self.spreads:
                total += spread.score(node)
            scores += 1
        return total / scores

    def score(self, usage: Usage, penalty: frozenset[str]) -> tuple[float, dict[str, float]]:
        """The final score and its parts, as ``AllocMetric.Scores`` shows them."""
        node = usage.node
        parts = {
            "binpack": binpack_score(
                usage.cpu + self.cpu, usage.cpu_cap, usage.memory + self.memory, usage.memory_cap
            )
        }
        collisions = self.tg_counts.get(node.id, 0)
        if collisions:
            parts["job-anti-affinity"] = -(collisions + 1) / self.count
        if node.id in penalty:
            parts["node-reschedule-penalty"] = -1.0
        if self.affinity:
            affinity = self.affinity.score(node)
            if affinity:
                parts["node-affinity"] = affinity
        if self.spreads:
            parts["allocation-spread"] = sum(s.score(node) for s in self.spreads)
        final = sum(parts.values()) / len(parts)
        parts["normalized-score"] = final
        return final, parts


class _Source:
    """The nodes in a random order, drawn lazily (an incremental Fisher-Yates), so a
    pass that looks at 1,300 of 5,000 nodes shuffles 1,300. With ``by_dc`` the order
    takes datacenters in turn, so any window of candidates sees each of them. After
    the last node the same order starts over."""

    def __init__(self, ready: ReadyNodes, rng: random.Random, by_dc: bool) -> None:
        groups = list(ready.by_dc.values()) if by_dc else [ready.nodes]
        self.groups = [list(g) for g in groups if g]
        self.drawn = [0] * len(self.groups)
        self.order: list[Node] = []
        self.n = len(ready.nodes)
        self.turn = 0
        self.pos = 0
        self.random = rng.random

    def next(self) -> Node:
        pos = self.pos
        self.pos = pos + 1 if pos + 1 < self.n else 0
        if pos < len(self.order):
            return self.order[pos]
        node = self._draw()
        self.order.append(node)
        return node

    def _draw(self) -> Node:
        while True:
            g = self.turn
            self.turn = (g + 1) % len(self.groups)
            group, i = self.groups[g], self.drawn[g]
            if i < len(group):
                j = i + int(self.random() * (len(group) - i))
                group[i], group[j] = group[j], group[i]
                self.drawn[g] = i + 1
                return group[i]


class Stack:
    """The candidate source for one pass, walked across placements so consecutive
    placements look at different nodes (Nomad's static iterator over shuffled nodes)."""

    def __init__(self, pass_: Pass, ready: ReadyNodes, batch: bool, by_dc: bool) -> None:
        self.pass_ = pass_
        self.source = _Source(ready, pass_.rng, by_dc)
        n = self.source.n
        self.limit = 2 if batch or n < 2 else max(2, math.ceil(math.log2(n)))
        self.available = {dc: len(nodes) for dc, nodes in ready.by_dc.items()}

    def select(
        self, ask: GroupAsk, penalty: frozenset[str] = frozenset()
    ) -> tuple[Usage | None, AllocMetric]:
        n = self.source.n
        draw = self.source.next
        limit = max(self.limit, min(max(ask.count, WIDE_LIMIT), n)) if ask.wide else self.limit
        evaluated = filtered = exhausted = 0
        constraint_filtered: dict[str, int] = {}
        dimension_exhausted: dict[str, int] = {}
        best: Usage | None = None
        best_score = -math.inf
        found = 0
        skipped: list[tuple[float, Usage]] = []
        usage_of = self.pass_.peek
        reason_of = ask.feasibility.reason
        rank = ask.rank
        distinct = ask.distinct_hosts or bool(ask.distinct)
        while evaluated < n and found < limit:
            node = draw()
            evaluated += 1
            reason = reason_of(node)
            if not reason and distinct:
                reason = ask.blocked_by_distinct(node)
            if reason:
                filtered += 1
                constraint_filtered[reason] = constraint_filtered.get(reason, 0) + 1
                continue
            usage = usage_of(node)
            dim = ask.exhausted(usage)
            if dim:
                exhausted += 1
                dimension_exhausted[dim] = dimension_exhausted.get(dim, 0) + 1
                continue
            score = rank(usage, penalty)
            if score <= SKIP_SCORE_THRESHOLD and len(skipped) < MAX_SKIP:
                skipped.append((score, usage))
                continue
            found += 1
            if score > best_score:
                best, best_score = usage, score
        if found < limit:
            for score, usage in skipped[: limit - found]:
                if score > best_score:
                    best, best_score = usage, score
        metric = AllocMetric(
            nodes_evaluated=evaluated,
            nodes_filtered=filtered,
            nodes_in_pool=n,
            nodes_available=self.available,
            constraint_filtered=constraint_filtered,
            nodes_exhausted=exhausted,
            dimension_exhausted=dimension_exhausted,
            scores=ask.score(best, penalty)[1] if best is not None else {},
        )
        return best, metric
