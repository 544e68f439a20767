"""The restart policy as pure decisions over a fake clock, and the events' wording."""

from __future__ import annotations

import random

from steppe.client import Outcome, RestartTracker, TrackerState, go_duration, policy_for
from steppe.client import _events as ev
from steppe.client._restart import (
    REASON_DELAY,
    REASON_NO_RESTARTS,
    REASON_SUCCESS,
    REASON_UNRECOVERABLE,
    REASON_WITHIN_POLICY,
)
from steppe.drivers import ExitResult
from steppe.structs import NS, RestartPolicy

FAIL = ExitResult(exit_code=1)
OK = ExitResult(exit_code=0)
MINUTE = 60 * NS


def tracker(job_type: str = "service", **policy: object) -> RestartTracker:
    fields: dict[str, object] = {"attempts": 2, "interval": 30 * MINUTE, "delay": 15 * NS}
    fields.update(policy)
    return RestartTracker(RestartPolicy(**fields), job_type)  # type: ignore[arg-type]


def test_go_durations_read_like_nomads() -> None:
    cases = {
        0: "0s",
        25 * NS: "25s",
        30 * MINUTE: "30m0s",
        3600 * NS: "1h0m0s",
        24 * 3600 * NS: "24h0m0s",
        90 * NS + NS // 2: "1m30.5s",
        1_500_000_000: "1.5s",
        250_000_000: "250ms",
        1_500: "1.5µs",
        7: "7ns",
    }
    assert {ns: go_duration(ns) for ns in cases} == cases


def test_attempts_within_interval_then_fail() -> None:
    t = tracker()
    now = 1_000 * NS
    first = t.on_exit(FAIL, now)
    second = t.on_exit(FAIL, now + MINUTE)
    third = t.on_exit(FAIL, now + 2 * MINUTE)
    assert [d.outcome for d in (first, second)] == [Outcome.RESTART, Outcome.RESTART]
    assert first.delay_ns == second.delay_ns == 15 * NS
    assert first.reason == REASON_WITHIN_POLICY
    assert third.outcome is Outcome.NOT_RESTARTING
    assert third.reason == 'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'


def test_failures_spread_beyond_the_interval_never_exhaust_attempts() -> None:
    t = tracker(attempts=1, interval=10 * MINUTE)
    now = 0
    for _ in range(5):
        assert t.on_exit(FAIL, now).outcome is Outcome.RESTART
        now += 11 * MINUTE


def test_mode_delay_waits_for_the_window_to_reset_then_counts_afresh() -> None:
    t = tracker(attempts=2, interval=10 * MINUTE, delay=5 * NS, mode="delay")
    start = 50 * NS
    t.on_exit(FAIL, start)
    t.on_exit(FAIL, start + MINUTE)
    exhausted = t.on_exit(FAIL, start + 3 * MINUTE)
    assert exhausted.outcome is Outcome.RESTART
    assert exhausted.reason == REASON_DELAY
    assert exhausted.delay_ns == 7 * MINUTE
    after_window = start + 10 * MINUTE + NS
    fresh = t.on_exit(FAIL, after_window)
    assert (fresh.outcome, fresh.delay_ns, fresh.reason) == (
        Outcome.RESTART,
        5 * NS,
        REASON_WITHIN_POLICY,
    )
    assert t.state() == TrackerState(count=1, window_start_ns=after_window)


def test_batch_success_is_complete_service_success_restarts() -> None:
    batch = tracker("batch").on_exit(OK, 0)
    assert (batch.outcome, batch.reason) == (Outcome.TERMINATED, REASON_SUCCESS)
    service = tracker("service").on_exit(OK, 0)
    assert service.outcome is Outcome.RESTART
    assert tracker("sysbatch").on_exit(OK, 0).outcome is Outcome.TERMINATED
    assert tracker("system").on_exit(OK, 0).outcome is Outcome.RESTART


def test_zero_attempts_never_restarts() -> None:
    decision = tracker(attempts=0).on_exit(FAIL, 0)
    assert (decision.outcome, decision.reason) == (Outcome.NOT_RESTARTING, REASON_NO_RESTARTS)


def test_start_errors_count_unless_unrecoverable() -> None:
    t = tracker(attempts=1)
    assert t.on_start_error(True, 0).outcome is Outcome.RESTART
    assert t.on_start_error(True, NS).outcome is Outcome.NOT_RESTARTING
    unrecoverable = tracker().on_start_error(False, 0)
    assert (unrecoverable.outcome, unrecoverable.reason) == (
        Outcome.NOT_RESTARTING,
        REASON_UNRECOVERABLE,
    )


def test_tracker_state_survives_a_restart_of_the_client() -> None:
    t = tracker(attempts=2)
    t.on_exit(FAIL, 0)
    t.on_exit(FAIL, NS)
    revived = RestartTracker(t.policy, "service", state=t.state())
    assert revived.on_exit(FAIL, 2 * NS).outcome is Outcome.NOT_RESTARTING


def test_seeded_jitter_is_within_a_quarter_and_reproducible() -> None:
    delays = []
    for _ in range(2):
        t = RestartTracker(
            RestartPolicy(attempts=50, delay=10 * NS), "service", rng=random.Random(7)
        )
        delays.append([t.on_exit(FAIL, i).delay_ns for i in range(20)])
    assert delays[0] == delays[1]
    assert all(10 * NS <= d <= 12.5 * NS for d in delays[0])
    assert len(set(delays[0])) > 1


def test_policy_precedence_task_group_job_default() -> None:
    task = RestartPolicy(attempts=9)
    group = RestartPolicy(attempts=4)
    assert policy_for(task, group, "service") is task
    assert policy_for(None, group, "service") is group
    assert policy_for(None, None, "batch").attempts == 3
    assert policy_for(None, None, "service").attempts == 2


def test_terminated_event_says_oom_killed() -> None:
    event = ev.terminated(5, ExitResult(exit_code=137, signal=9, oom_killed=True))
    assert event.type == "Terminated"
    assert event.display_message == 'Exit Code: 137, Signal: 9, Exit Message: "OOM Killed"'
    assert event.details["oom_killed"] == "true"
    assert ev.exit_cause(ExitResult(exit_code=137, oom_killed=True)) == "OOM Killed"


def test_restarting_event_says_why_and_when() -> None:
    within = ev.restarting(1, 25 * NS, REASON_WITHIN_POLICY, "Exit status 1")
    assert within.display_message == "Exit status 1 - Task restarting in 25s"
    assert within.restart_reason == REASON_WITHIN_POLICY
    delayed = ev.restarting(1, 29 * MINUTE, REASON_DELAY, "Exit status 2")
    assert delayed.display_message == (
        "Exit status 2 - Exceeded allowed attempts, applying a delay - Task restarting in 29m0s"
    )
    killing = ev.killing(1, 5 * NS)
    assert killing.display_message == "Sent interrupt. Waiting 5s before force killing"
