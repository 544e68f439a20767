"""When may a failed allocation be replaced? Nomad's ``reschedule`` block: a number
of attempts within an interval (or unlimited), each after a delay that is constant
or grows exponentially or along the Fibonacci sequence, capped by ``max_delay``."""

from __future__ import annotations

from steppe.structs import NS, Allocation, ReschedulePolicy, RescheduleTracker

RESCHEDULE_WINDOW = 1 * NS
"""Allocations due within this much of now are rescheduled in this pass."""


def next_delay(policy: ReschedulePolicy, tracker: RescheduleTracker | None) -> int:
    events = tracker.events if tracker is not None else ()
    delay = policy.delay
    if policy.delay_function == "exponential" and events:
        delay = max(events[-1].delay, policy.delay) * 2
    elif policy.delay_function == "fibonacci" and len(events) >= 2:
        delay = events[-1].delay + events[-2].delay
    elif policy.delay_function == "fibonacci" and events:
        delay = max(events[-1].delay, policy.delay)
    if policy.max_delay > 0:
        delay = min(delay, policy.max_delay)
    return delay


def attempts_left(policy: ReschedulePolicy, tracker: RescheduleTracker | None, now: int) -> bool:
    if policy.unlimited:
        return True
    if policy.attempts <= 0:
        return False
    events = tracker.events if tracker is not None else ()
    if policy.interval > 0:
        events = tuple(e for e in events if now - e.reschedule_time < policy.interval)
    return len(events) < policy.attempts


def reschedule_at(
    alloc: Allocation, policy: ReschedulePolicy | None, now: int
) -> tuple[int, int] | None:
    """``(when, delay)`` if the allocation may be rescheduled, else None. ``when`` counts
    from the time the allocation last changed (when it failed), or from now."""
    if policy is None or not attempts_left(policy, alloc.reschedule_tracker, now):
        return None
    delay = next_delay(policy, alloc.reschedule_tracker)
    failed_at = alloc.modify_time or now
    return failed_at + delay, delay
