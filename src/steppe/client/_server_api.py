"""What the client needs from the servers, and nothing more.

The dev agent implements it in-process; a remote client implements it over RPC; tests
use an in-memory fake. Every failure is a :class:`~steppe.errors.SteppeError`
(:class:`~steppe.errors.NotFoundError` when the servers no longer know the node).
"""

from __future__ import annotations

from typing import Protocol

from steppe.structs import Allocation, Node


class ServerAPI(Protocol):
    async def register_node(self, node: Node) -> float:
        """Registers (or re-registers) the node; returns the heartbeat TTL in seconds."""

    async def heartbeat(self, node_id: str) -> float:
        """Keeps the node alive; returns the TTL until the next heartbeat is due."""

    async def node_allocations(
        self, node_id: str, min_index: int, timeout: float
    ) -> tuple[list[Allocation], int]:
        """Blocking query: returns the node's allocations (``job`` filled in) once they
        changed past ``min_index``, or after ``timeout`` seconds, with the new index."""

    async def update_allocs(self, allocs: list[Allocation]) -> None:
        """Takes client-side fields (client status, description, task states)."""
