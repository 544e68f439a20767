"""The eval broker: the leader's queue of evaluations waiting for a scheduler worker.

Like Nomad's, it hands out at most one evaluation per job at a time (a second eval
for the same job waits until the first is acked), so two workers never plan the
same job from different snapshots. Delivery is at-least-once: an eval not acked
within ``nack_timeout`` goes back to the queue.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from steppe.structs import Evaluation


@dataclass(order=True)
class _Ready:
    sort_key: tuple[int, int]
    eval: Evaluation = field(compare=False)


class EvalBroker:
    def __init__(self, clock: Callable[[], float], nack_timeout: float = 60.0) -> None:
        self._clock = clock
        self._nack_timeout = nack_timeout
        self._ready: list[_Ready] = []
        self._seq = itertools.count()
        self._known: set[str] = set()
        self._job_busy: dict[tuple[str, str], str] = {}
        self._job_waiting: dict[tuple[str, str], list[Evaluation]] = {}
        self._unacked: dict[str, tuple[Evaluation, float]] = {}
        self._delayed: list[tuple[float, int, Evaluation]] = []
        self._wakeup = asyncio.Condition()
        self.enabled = False

    def stats(self) -> dict[str, int]:
        return {
            "TotalReady": len(self._ready),
            "TotalUnacked": len(self._unacked),
            "TotalWaiting": len(self._delayed) + sum(len(v) for v in self._job_waiting.values()),
        }

    def known(self, eval_id: str) -> bool:
        return eval_id in self._known

    async def enqueue(self, ev: Evaluation, wait_until: float = 0.0) -> None:
        if ev.id in self._known:
            return
        self._known.add(ev.id)
        if wait_until > self._clock():
            heapq.heappush(self._delayed, (wait_until, next(self._seq), ev))
        else:
            self._push_ready(ev)
        await self._notify()

    def _push_ready(self, ev: Evaluation) -> None:
        job = (ev.namespace, ev.job_id)
        if job in self._job_busy:
            self._job_waiting.setdefault(job, []).append(ev)
            return
        self._job_busy[job] = ev.id
        heapq.heappush(self._ready, _Ready((-ev.priority, next(self._seq)), ev))

    async def _notify(self) -> None:
        async with self._wakeup:
            self._wakeup.notify_all()

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, ev = heapq.heappop(self._delayed)
            self._push_ready(ev)
        for eval_id, (ev, deadline) in list(self._unacked.items()):
            if deadline <= now:
                del self._unacked[eval_id]
                heapq.heappush(self._ready, _Ready((-ev.priority, next(self._seq)), ev))

    def _next_deadline(self) -> float | None:
        deadlines = [d for _, d in self._unacked.values()]
        if self._delayed:
            deadlines.append(self._delayed[0][0])
        return min(deadlines) if deadlines else None

    async def dequeue(self, types: frozenset[str], timeout: float) -> Evaluation | None:
        """The next ready eval of one of ``types``, or None after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._wakeup:
            while True:
                self._promote_due()
                for i, item in enumerate(self._ready):
                    if item.eval.type in types or not types:
                        self._ready.pop(i)
                        heapq.heapify(self._ready)
                        self._unacked[item.eval.id] = (
                            item.eval,
                            self._clock() + self._nack_timeout,
                        )
                        return item.eval
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                due = self._next_deadline()
                if due is not None:
                    remaining = min(remaining, max(0.01, due - self._clock()))
                try:
                    async with asyncio.timeout(remaining):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass

    async def ack(self, ev: Evaluation) -> None:
        """The eval is done: the next eval waiting for the same job becomes ready."""
        self._unacked.pop(ev.id, None)
        self._known.discard(ev.id)
        job = (ev.namespace, ev.job_id)
        if self._job_busy.get(job) == ev.id:
            del self._job_busy[job]
            waiting = self._job_waiting.pop(job, [])
            if waiting:
                # only the newest matters: it sees the newest job; older ones are superseded
                first, rest = waiting[0], waiting[1:]
                self._push_ready(first)
                for later in rest:
                    self._job_waiting.setdefault(job, []).append(later)
        await self._notify()

    async def nack(self, ev: Evaluation) -> None:
        """Puts an eval back for another try (a worker failed on it)."""
        if self._unacked.pop(ev.id, None) is not None:
            heapq.heappush(self._ready, _Ready((-ev.priority, next(self._seq)), ev))
            await self._notify()

    def clear(self) -> None:
        """Leadership lost: forget everything; the next leader rebuilds from state."""
        self._ready.clear()
        self._known.clear()
        self._job_busy.clear()
        self._job_waiting.clear()
        self._unacked.clear()
        self._delayed.clear()
