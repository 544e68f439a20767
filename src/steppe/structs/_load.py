"""What a node's live allocations hold together.

The state store keeps one :class:`NodeLoad` per node as allocations come and go, so
the scheduler and the plan check read a node's usage in one lookup instead of adding
up every allocation on it (late in a 50,000-allocation fill that adding up was a
tenth of every server's time)."""

from __future__ import annotations

import immutables

from steppe.structs._alloc import Allocation

_NO_PORTS: immutables.Map[int, int] = immutables.Map()


def alloc_ports(alloc: Allocation) -> list[int]:
    """Host ports an allocation holds; cheaper than ``AllocatedResources.ports()``,
    which builds a ``Port`` per entry."""
    res = alloc.allocated_resources
    ports = [p.value for p in res.shared.ports]
    for task in res.tasks.values():
        for net in task.networks:
            ports.extend(p.value for p in net.reserved_ports)
            ports.extend(p.value for p in net.dynamic_ports)
    return ports


def alloc_cpu_memory(alloc: Allocation) -> tuple[int, int]:
    cpu = memory = 0
    for task in alloc.allocated_resources.tasks.values():
        cpu += task.cpu.cpu_shares
        memory += task.memory.memory_mb
    return cpu, memory


class NodeLoad:
    """CPU (MHz), memory (MB) and host ports held by a node's non-terminal allocations.

    Immutable: :meth:`plus` and :meth:`minus` return new loads, so a snapshot's load
    never changes under its reader, and a reader may cache what it derives from a load
    for as long as it gets the very same object back. ``ports`` maps each port to how
    many allocations hold it, so taking one holder away cannot free a port another
    still holds."""

    __slots__ = ("allocs", "cpu", "memory", "ports")

    def __init__(
        self,
        cpu: int = 0,
        memory: int = 0,
        ports: immutables.Map[int, int] = _NO_PORTS,
        allocs: int = 0,
    ) -> None:
        self.cpu = cpu
        self.memory = memory
        self.ports = ports
        self.allocs = allocs
        """How many allocations count towards this load."""

    def __repr__(self) -> str:
        return (
            f"NodeLoad(cpu={self.cpu}, memory={self.memory}, "
            f"ports={sorted(self.ports)}, allocs={self.allocs})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeLoad):
            return NotImplemented
        return (self.cpu, self.memory, self.allocs, self.ports) == (
            other.cpu,
            other.memory,
            other.allocs,
            other.ports,
        )

    __hash__ = None  # type: ignore[assignment]

    def plus(self, alloc: Allocation) -> NodeLoad:
        """With ``alloc`` counted (if it is live)."""
        if alloc.terminal():
            return self
        cpu, memory = alloc_cpu_memory(alloc)
        ports = self.ports
        for port in alloc_ports(alloc):
            ports = ports.set(port, ports.get(port, 0) + 1)
        return NodeLoad(self.cpu + cpu, self.memory + memory, ports, self.allocs + 1)

    def minus(self, alloc: Allocation) -> NodeLoad:
        """Without ``alloc``, which must have been counted by :meth:`plus` (a terminal
        allocation never was, so taking one away changes nothing)."""
        if alloc.terminal():
            return self
        cpu, memory = alloc_cpu_memory(alloc)
        ports = self.ports
        for port in alloc_ports(alloc):
            left = ports.get(port, 0) - 1
            if left > 0:
                ports = ports.set(port, left)
            elif port in ports:
                ports = ports.delete(port)
        return NodeLoad(self.cpu - cpu, self.memory - memory, ports, self.allocs - 1)


NO_LOAD = NodeLoad()
"""A node nothing runs on."""
