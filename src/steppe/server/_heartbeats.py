"""Node heartbeat deadlines, kept by the leader.

A node that misses its deadline is declared down. The TTL handed to clients grows
with the number of nodes so the leader never has to process more than
``max_per_second`` heartbeats, but starts in seconds: failover should be noticed in
seconds, not in Nomad's tens of seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class HeartbeatPolicy:
    min_ttl: float = 4.0
    grace: float = 3.0
    max_per_second: float = 50.0
    failover_ttl: float = 30.0
    """Given to every node when a new leader takes over, so clients of a slow
    old leader are not declared down before they found the new one."""

    def ttl(self, node_count: int) -> float:
        return max(self.min_ttl, node_count / self.max_per_second)


class HeartbeatTimers:
    """Pure bookkeeping: who must report by when. The server polls :meth:`expired`."""

    def __init__(self, policy: HeartbeatPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._deadlines: dict[str, float] = {}

    def reset(self, node_id: str, ttl: float | None = None) -> float:
        """Records a heartbeat; returns the TTL the node must report within."""
        if ttl is None:
            ttl = self.policy.ttl(len(self._deadlines) + (node_id not in self._deadlines))
        self._deadlines[node_id] = self._clock() + ttl + self.policy.grace
        return ttl

    def forget(self, node_id: str) -> None:
        self._deadlines.pop(node_id, None)

    def expired(self) -> list[str]:
        now = self._clock()
        gone = [n for n, deadline in self._deadlines.items() if deadline <= now]
        for node_id in gone:
            del self._deadlines[node_id]
        return gone

    def clear(self) -> None:
        self._deadlines.clear()

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._deadlines
