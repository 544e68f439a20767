"""Does a set of allocations fit on a node? Shared by the scheduler, which asks it
incrementally while it places, and by the leader's plan applier, which asks it again
against the newest state before committing (so two workers planning from the same
snapshot can never oversubscribe a node)."""

from __future__ import annotations

from collections.abc import Iterable

from steppe.scheduler._protocols import NodeState
from steppe.structs import (
    NODE_STATUS_READY,
    Allocation,
    Node,
    NodeLoad,
    Plan,
    PlanResult,
    alloc_cpu_memory,
    alloc_ports,
)

DIM_CPU = "cpu"
DIM_MEMORY = "memory"
DIM_PORT = "network: reserved port collision"
DIM_DYNAMIC_PORT = "network: dynamic port selection failed"


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
    """What a node offers and what its live allocations hold, as the scheduler reads it.

    Derived from the node and its :class:`NodeLoad` (which the state keeps per node)
    and reused while the state hands back the very same node and load objects, so
    visiting a node that did not change costs one dictionary lookup."""

    __slots__ = ("cpu", "cpu_cap", "load", "memory", "memory_cap", "node", "ports")

    def __init__(self, node: Node, load: NodeLoad) -> None:
        self.node = node
        self.load = load
        self.cpu_cap, self.memory_cap = node_capacity(node)
        self.cpu = load.cpu
        self.memory = load.memory
        self.ports = node_reserved_ports(node)
        self.ports.update(load.ports)


_HELD: dict[str, Held] = {}
_HELD_MAX = 200_000


def held(node: Node, load: NodeLoad) -> Held:
    entry = _HELD.get(node.id)
    if entry is not None and entry.node is node and entry.load is load:
        return entry
    if len(_HELD) >= _HELD_MAX:
        _HELD.clear()
    fresh = _HELD[node.id] = Held(node, load)
    return fresh


def allocs_fit(node: Node, allocs: Iterable[Allocation]) -> tuple[bool, str]:
    """Whether ``allocs`` together fit on ``node``; on failure, the exhausted dimension."""
    cpu_cap, mem_cap = node_capacity(node)
    cpu = mem = 0
    used = node_reserved_ports(node)
    for alloc in allocs:
        alloc_cpu, alloc_memory = alloc_cpu_memory(alloc)
        cpu += alloc_cpu
        mem += alloc_memory
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
    """Whether the node's load, less what ``stopping`` and ``placing`` replace of
    its allocations, has room for ``placing``."""
    node = state.node(node_id)
    if node is None:
        return False, "node does not exist"
    if node.status != NODE_STATUS_READY:
        return False, "node is not ready for placements"
    load = state.node_load(node_id)
    replaced: set[str] = set()
    for alloc in stopping:
        prior = state.alloc(alloc.id)
        if prior is not None and prior.node_id == node_id and alloc.id not in replaced:
            replaced.add(alloc.id)
            load = load.minus(prior)
    new_here = False
    for alloc in placing:
        prior = state.alloc(alloc.id)
        if prior is None or prior.node_id != node_id:
            new_here = True
        elif alloc.id not in replaced:
            replaced.add(alloc.id)
            load = load.minus(prior)
    if new_here and (node.scheduling_eligibility != "eligible" or node.drain):
        return False, "node is not eligible for new allocations"
    return _adds_fit(held(node, load), placing)


def _adds_fit(base: Held, placing: tuple[Allocation, ...]) -> tuple[bool, str]:
    cpu, memory, used = base.cpu, base.memory, base.ports
    mine: set[int] = set()
    for alloc in placing:
        if alloc.terminal():
            continue
        alloc_cpu, alloc_memory = alloc_cpu_memory(alloc)
        cpu += alloc_cpu
        memory += alloc_memory
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
