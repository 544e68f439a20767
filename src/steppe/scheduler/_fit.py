"""Does a set of allocations fit on a node? Shared by the scheduler, which asks it
incrementally while it places, and by the leader's plan applier, which asks it again
against the newest state before committing (so two workers planning from the same
snapshot can never oversubscribe a node)."""

from __future__ import annotations

import operator
from collections.abc import Iterable

from steppe.scheduler._protocols import NodeState
from steppe.structs import NODE_STATUS_READY, Allocation, Node, Plan, PlanResult

DIM_CPU = "cpu"
DIM_MEMORY = "memory"
DIM_PORT = "network: reserved port collision"
DIM_DYNAMIC_PORT = "network: dynamic port selection failed"


def alloc_ports(alloc: Allocation) -> list[int]:
    """Host ports an allocation holds; cheaper than ``AllocatedResources.ports()``
    because the plan applier calls it for every allocation on every touched node."""
    res = alloc.allocated_resources
    ports = [p.value for p in res.shared.ports]
    for task in res.tasks.values():
        for net in task.networks:
            ports.extend(p.value for p in net.reserved_ports)
            ports.extend(p.value for p in net.dynamic_ports)
    return ports


def node_capacity(node: Node) -> tuple[int, int]:
    """CPU (MHz) and memory (MB) the node offers to allocations."""
    return (
        node.resources.cpu - node.reserved.cpu,
        node.resources.memory_mb - node.reserved.memory_mb,
    )


def node_reserved_ports(node: Node) -> set[int]:
    ports: set[int] = set()
    for net in node.reserved.networks:
        ports.update(p.value for p in net.reserved_ports)
    return ports


class Held:
    """What a node's non-terminal allocations hold, plus the node's own reservations.

    Remembered per node between passes and reused while the state hands back the very
    same allocation objects (snapshots share unchanged rows), so scheduling a job
    costs in proportion to the nodes that changed, not to every allocation on every
    node visited."""

    __slots__ = ("allocs", "cpu", "cpu_cap", "memory", "memory_cap", "node", "ports", "reserved")

    def __init__(self, node: Node, allocs: list[Allocation], before: Held | None = None) -> None:
        self.node = node
        self.allocs = allocs
        self.cpu_cap: int
        self.memory_cap: int
        self.reserved: frozenset[int]
        if before is not None:
            self.cpu_cap, self.memory_cap = before.cpu_cap, before.memory_cap
            self.reserved = before.reserved
        else:
            self.cpu_cap, self.memory_cap = node_capacity(node)
            self.reserved = frozenset(node_reserved_ports(node))
        self.ports = set(self.reserved)
        cpu = memory = 0
        for alloc in allocs:
            use = _USES.get(alloc.id)
            if use is None or use[0] is not alloc:
                use = _use(alloc)
            if use[1]:
                cpu += use[2]
                memory += use[3]
                self.ports.update(use[4])
        self.cpu = cpu
        self.memory = memory


Use = tuple[Allocation, bool, int, int, list[int]]
_USES: dict[str, Use] = {}
"""Per allocation object: (itself, counts, cpu, memory, ports), so recomputing a
node whose allocation list changed costs one lookup per unchanged allocation."""


def _use(alloc: Allocation) -> Use:
    cpu = memory = 0
    for task in alloc.allocated_resources.tasks.values():
        cpu += task.cpu.cpu_shares
        memory += task.memory.memory_mb
    if len(_USES) >= _HELD_MAX * 10:
        _USES.clear()
    use = _USES[alloc.id] = (alloc, not alloc.terminal(), cpu, memory, alloc_ports(alloc))
    return use


_HELD: dict[str, Held] = {}
_HELD_MAX = 200_000


def held(node: Node, allocs: list[Allocation]) -> Held:
    entry = _HELD.get(node.id)
    if entry is not None and entry.node is node:
        if len(entry.allocs) == len(allocs) and all(map(operator.is_, entry.allocs, allocs)):
            return entry
    else:
        entry = None
    if len(_HELD) >= _HELD_MAX:
        _HELD.clear()
    fresh = _HELD[node.id] = Held(node, allocs, entry)
    return fresh


def allocs_fit(node: Node, allocs: Iterable[Allocation]) -> tuple[bool, str]:
    """Whether ``allocs`` together fit on ``node``; on failure, the exhausted dimension."""
    cpu_cap, mem_cap = node_capacity(node)
    cpu = mem = 0
    used = node_reserved_ports(node)
    for alloc in allocs:
        for task in alloc.allocated_resources.tasks.values():
            cpu += task.cpu.cpu_shares
            mem += task.memory.memory_mb
        for port in alloc_ports(alloc):
            if port in used:
                return False, DIM_PORT
            used.add(port)
    if cpu > cpu_cap:
        return False, DIM_CPU
    if mem > mem_cap:
        return False, DIM_MEMORY
    return True, ""


def _node_part_fits(
    state: NodeState,
    node_id: str,
    stopping: tuple[Allocation, ...],
    placing: tuple[Allocation, ...],
) -> tuple[bool, str]:
    node = state.node(node_id)
    if node is None:
        return False, "node does not exist"
    if node.status != NODE_STATUS_READY:
        return False, "node is not ready for placements"
    existing = state.allocs_by_node(node_id)
    existing_ids = {a.id for a in existing}
    if (node.scheduling_eligibility != "eligible" or node.drain) and any(
        a.id not in existing_ids for a in placing
    ):
        return False, "node is not eligible for new allocations"
    replaced = {a.id for a in stopping}
    replaced.update(a.id for a in placing)
    if replaced.isdisjoint(existing_ids):
        return _adds_fit(held(node, existing), placing)
    proposed = [a for a in existing if a.id not in replaced and not a.terminal()]
    proposed.extend(a for a in placing if not a.terminal())
    return allocs_fit(node, proposed)


def _adds_fit(base: Held, placing: tuple[Allocation, ...]) -> tuple[bool, str]:
    cpu, memory, used = base.cpu, base.memory, base.ports
    mine: set[int] = set()
    for alloc in placing:
        if alloc.terminal():
            continue
        for task in alloc.allocated_resources.tasks.values():
            cpu += task.cpu.cpu_shares
            memory += task.memory.memory_mb
        for port in alloc_ports(alloc):
            if port in used or port in mine:
                return False, DIM_PORT
            mine.add(port)
    if cpu > base.cpu_cap:
        return False, DIM_CPU
    if memory > base.memory_cap:
        return False, DIM_MEMORY
    return True, ""


def evaluate_plan(state: NodeState, plan: Plan) -> PlanResult:
    """The part of ``plan`` that still fits on ``state``, node by node.

    A node's share (its stops and its placements) is committed whole or not at all.
    Stops alone always commit. Anything rejected sets ``refresh_index`` so the worker
    refreshes to at least this state before planning again. ``AllAtOnce`` jobs commit
    everything or nothing."""
    updates: dict[str, tuple[Allocation, ...]] = {}
    placements: dict[str, tuple[Allocation, ...]] = {}
    rejected = False
    for node_id in {*plan.node_update, *plan.node_allocation}:
        stopping = plan.node_update.get(node_id, ())
        placing = plan.node_allocation.get(node_id, ())
        if placing:
            fits, _ = _node_part_fits(state, node_id, stopping, placing)
            if not fits:
                rejected = True
                continue
            placements[node_id] = placing
        if stopping:
            updates[node_id] = stopping
    if rejected and plan.job is not None and plan.job.all_at_once:
        return PlanResult(refresh_index=state.index)
    return PlanResult(
        node_update=updates,
        node_allocation=placements,
        refresh_index=state.index if rejected else 0,
    )
