"""One scheduling pass: the plan being built and what each node holds meanwhile.

Node usage is computed the first time a node is looked at and then updated in place
as this pass stops and places allocations, so a pass costs in proportion to the
nodes it visits, not to the size of the cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from steppe.scheduler._fit import Held, held
from steppe.scheduler._protocols import State
from steppe.structs import (
    Allocation,
    Job,
    Node,
    Plan,
    PlanAnnotations,
    alloc_cpu_memory,
    alloc_ports,
)


class Usage(Protocol):
    node: Node
    cpu: int
    memory: int
    cpu_cap: int
    memory_cap: int
    ports: set[int]


class NodeUsage:
    __slots__ = ("_own", "cpu", "cpu_cap", "memory", "memory_cap", "node", "ports")

    def __init__(self, base: Held) -> None:
        self.node = base.node
        self.cpu_cap = base.cpu_cap
        self.memory_cap = base.memory_cap
        self.cpu = base.cpu
        self.memory = base.memory
        self.ports = base.ports
        self._own = False

    def own_ports(self) -> set[int]:
        """The port set, copied from the shared :class:`Held` before the first change."""
        if not self._own:
            self.ports = set(self.ports)
            self._own = True
        return self.ports

    def add(self, alloc: Allocation) -> None:
        cpu, memory = alloc_cpu_memory(alloc)
        self.cpu += cpu
        self.memory += memory
        self.own_ports().update(alloc_ports(alloc))

    def remove(self, alloc: Allocation) -> None:
        cpu, memory = alloc_cpu_memory(alloc)
        self.cpu -= cpu
        self.memory -= memory
        self.own_ports().difference_update(alloc_ports(alloc))


class PlanBuilder:
    """Mutable while the pass runs; frozen into a :class:`Plan` at the end."""

    def __init__(self, eval_id: str, priority: int, job: Job | None, snapshot_index: int) -> None:
        self.eval_id = eval_id
        self.priority = priority
        self.job = job
        self.snapshot_index = snapshot_index
        self.node_update: dict[str, list[Allocation]] = {}
        self.node_allocation: dict[str, list[Allocation]] = {}
        self.stopped: dict[str, Allocation] = {}

    def stop(self, alloc: Allocation) -> None:
        self.node_update.setdefault(alloc.node_id, []).append(alloc)
        self.stopped[alloc.id] = alloc

    def unstop(self, alloc_id: str) -> Allocation | None:
        alloc = self.stopped.pop(alloc_id, None)
        if alloc is not None:
            bucket = self.node_update[alloc.node_id]
            bucket[:] = [a for a in bucket if a.id != alloc_id]
            if not bucket:
                del self.node_update[alloc.node_id]
        return alloc

    def place(self, alloc: Allocation) -> None:
        self.node_allocation.setdefault(alloc.node_id, []).append(alloc)

    def build(self, annotations: PlanAnnotations | None = None) -> Plan:
        return Plan(
            eval_id=self.eval_id,
            priority=self.priority,
            job=self.job,
            node_update={k: tuple(v) for k, v in self.node_update.items()},
            node_allocation={k: tuple(v) for k, v in self.node_allocation.items()},
            annotations=annotations,
            snapshot_index=self.snapshot_index,
        )

    def empty(self) -> bool:
        return not self.node_update and not self.node_allocation


class Pass:
    """Everything one evaluation's scheduling shares: state, clock, randomness, plan."""

    def __init__(
        self,
        state: State,
        plan: PlanBuilder,
        now: int,
        rng: random.Random,
        ids: Callable[[], str],
    ) -> None:
        self.state = state
        self.plan = plan
        self.now = now
        self.rng = rng
        self.ids = ids
        self._usage: dict[str, NodeUsage] = {}

    def peek(self, node: Node) -> Usage:
        """The node's usage for looking only: the shared :class:`Held` when this pass
        has not touched the node (most candidates), so looking costs no copy."""
        usage = self._usage.get(node.id)
        if usage is not None:
            return usage
        node_id = node.id
        if node_id in self.plan.node_update or node_id in self.plan.node_allocation:
            return self.usage(node)
        return held(node, self.state.node_load(node_id))

    def usage(self, node: Node) -> NodeUsage:
        """The node's usage for changing: this pass's own copy."""
        usage = self._usage.get(node.id)
        if usage is None:
            usage = self._usage[node.id] = NodeUsage(held(node, self.state.node_load(node.id)))
            placing = self.plan.node_allocation.get(node.id, [])
            replaced: set[str] = set()
            for alloc in self.plan.node_update.get(node.id, []) + placing:
                before = self.state.alloc(alloc.id)
                if before is None or before.node_id != node.id or alloc.id in replaced:
                    continue
                replaced.add(alloc.id)
                if not before.terminal():
                    usage.remove(before)
            for alloc in placing:
                usage.add(alloc)
        return usage

    def stop(self, alloc: Allocation) -> None:
        self.plan.stop(alloc)
        usage = self._usage.get(alloc.node_id)
        if usage is not None:
            usage.remove(alloc)

    def unstop(self, alloc_id: str) -> None:
        alloc = self.plan.unstop(alloc_id)
        if alloc is not None:
            usage = self._usage.get(alloc.node_id)
            if usage is not None:
                usage.add(alloc)

    def place(self, alloc: Allocation, replacing: Allocation | None = None) -> None:
        """Adds a new allocation, or (``replacing``) an in-place update of one."""
        self.plan.place(alloc)
        usage = self._usage.get(alloc.node_id)
        if usage is not None:
            if replacing is not None and not replacing.terminal():
                usage.remove(replacing)
            usage.add(alloc)
