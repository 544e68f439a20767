"""The restart tracker: Nomad's restart policy as a pure decision over a passed-in clock.

Semantics (Nomad's ``restarts.go``): the first failure opens an ``interval`` window; each
failure inside it counts one attempt. While attempts remain, the task restarts after
``delay``. When they run out, mode ``fail`` ends the task as failed and mode ``delay``
waits for the window to close, after which counting starts afresh. Batch tasks that exit
0 are complete; service and system tasks restart on any exit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

import msgspec

from steppe.drivers import ExitResult
from steppe.structs import RestartPolicy, default_restart_policy, go_duration

REASON_NO_RESTARTS = "Policy allows no restarts"
REASON_UNRECOVERABLE = "Error was unrecoverable"
REASON_WITHIN_POLICY = "Restart within policy"
REASON_DELAY = "Exceeded allowed attempts, applying a delay"
REASON_SUCCESS = "Restart unnecessary as task terminated successfully"

JITTER = 0.25
"""Nomad adds up to 25% to each delay; only applied when the tracker gets an rng."""

_RESTART_ON_SUCCESS = {"service": True, "system": True, "batch": False, "sysbatch": False}


class Outcome(Enum):
    RESTART = "restart"
    NOT_RESTARTING = "not_restarting"
    TERMINATED = "terminated"
    """Finished successfully: dead but not failed."""


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    delay_ns: int
    reason: str


class TrackerState(msgspec.Struct, frozen=True):
    """What survives an agent restart, so a restarted client keeps counting attempts."""

    count: int = 0
    window_start_ns: int | None = None


class RestartTracker:
    def __init__(
        self,
        policy: RestartPolicy,
        job_type: str,
        *,
        rng: random.Random | None = None,
        state: TrackerState | None = None,
    ) -> None:
        self.policy = policy
        self.restart_on_success = _RESTART_ON_SUCCESS.get(job_type, True)
        self._rng = rng
        state = state or TrackerState()
        self.count = state.count
        self.window_start_ns = state.window_start_ns

    def state(self) -> TrackerState:
        return TrackerState(count=self.count, window_start_ns=self.window_start_ns)

    def on_exit(self, result: ExitResult, now_ns: int) -> Decision:
        """What to do after the task exited with ``result`` at ``now_ns``."""
        if result.successful and not self.restart_on_success:
            return Decision(Outcome.TERMINATED, 0, REASON_SUCCESS)
        return self._failure(now_ns)

    def on_start_error(self, recoverable: bool, now_ns: int) -> Decision:
        """What to do after the driver could not start the task."""
        if not recoverable:
            return Decision(Outcome.NOT_RESTARTING, 0, REASON_UNRECOVERABLE)
        return self._failure(now_ns)

    def _failure(self, now_ns: int) -> Decision:
        policy = self.policy
        if policy.attempts == 0:
            return Decision(Outcome.NOT_RESTARTING, 0, REASON_NO_RESTARTS)
        if self.window_start_ns is None or now_ns > self.window_start_ns + policy.interval:
            self.count = 0
            self.window_start_ns = now_ns
        self.count += 1
        if self.count <= policy.attempts:
            return Decision(Outcome.RESTART, self._delay(), REASON_WITHIN_POLICY)
        if policy.mode == "delay":
            remaining = self.window_start_ns + policy.interval - now_ns
            return Decision(Outcome.RESTART, max(0, remaining), REASON_DELAY)
        return Decision(Outcome.NOT_RESTARTING, 0, exhausted_reason(policy))

    def _delay(self) -> int:
        delay = max(self.policy.delay, 1)
        if self._rng is None:
            return delay
        return delay + int(self._rng.randrange(delay) * JITTER)


def exhausted_reason(policy: RestartPolicy) -> str:
    return (
        f"Exceeded allowed attempts {policy.attempts} in interval "
        f'{go_duration(policy.interval)} and mode is "{policy.mode}"'
    )


def policy_for(
    task_policy: RestartPolicy | None, group_policy: RestartPolicy | None, job_type: str
) -> RestartPolicy:
    """The task's own policy wins over its group's, which wins over the job type's default."""
    return task_policy or group_policy or default_restart_policy(job_type)
