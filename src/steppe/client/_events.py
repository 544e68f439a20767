"""Task events with Nomad's type names and wording, so ``alloc status`` reads like Nomad's.

Each event carries a ``display_message`` composed the way Nomad's API fills it in, so
clients that only print that field still say why something happened.
"""

from __future__ import annotations

from steppe.client._restart import REASON_WITHIN_POLICY
from steppe.drivers import ExitResult
from steppe.structs import TaskEvent, go_duration

RECEIVED = "Received"
SETUP = "Task Setup"
STARTED = "Started"
TERMINATED = "Terminated"
RESTARTING = "Restarting"
NOT_RESTARTING = "Not Restarting"
KILLING = "Killing"
KILLED = "Killed"
DRIVER_FAILURE = "Driver Failure"
FAILED_VALIDATION = "Failed Validation"
SETUP_FAILURE = "Setup Failure"
SIBLING_FAILED = "Sibling Task Failed"
LEADER_DEAD = "Leader Task Dead"
RESTART_SIGNAL = "Restart Signaled"
SIGNALING = "Signaling"
TEMPLATE_RENDERED = "Template Rendered"

OOM_MESSAGE = "OOM Killed"


def received(now_ns: int) -> TaskEvent:
    return _event(RECEIVED, now_ns, "Task received by client")


def setup(now_ns: int) -> TaskEvent:
    return _event(SETUP, now_ns, "Building Task Directory")


def started(now_ns: int) -> TaskEvent:
    return _event(STARTED, now_ns, "Task started by client")


def terminated(now_ns: int, result: ExitResult) -> TaskEvent:
    message = OOM_MESSAGE if result.oom_killed else result.error
    parts = [f"Exit Code: {result.exit_code}"]
    if result.signal:
        parts.append(f"Signal: {result.signal}")
    if message:
        parts.append(f'Exit Message: "{message}"')
    details = {"exit_code": str(result.exit_code), "signal": str(result.signal)}
    if result.oom_killed:
        details["oom_killed"] = "true"
    return TaskEvent(
        type=TERMINATED,
        time=now_ns,
        message=message,
        display_message=", ".join(parts),
        details=details,
        exit_code=result.exit_code,
        signal=result.signal,
    )


def exit_cause(result: ExitResult) -> str:
    """Why the task stopped, in the words a restart event gives."""
    if result.oom_killed:
        return "OOM Killed"
    if result.signal:
        return f"Exit status {result.exit_code}, signal {result.signal}"
    if result.error:
        return f"Exit status {result.exit_code}: {result.error}"
    return f"Exit status {result.exit_code}"


def restarting(now_ns: int, delay_ns: int, reason: str, cause: str) -> TaskEvent:
    when = f"Task restarting in {go_duration(delay_ns)}"
    parts = [cause] if cause else []
    if reason and reason != REASON_WITHIN_POLICY:
        parts.append(reason)
    parts.append(when)
    return TaskEvent(
        type=RESTARTING,
        time=now_ns,
        message=cause,
        display_message=" - ".join(parts),
        restart_reason=reason,
        start_delay=delay_ns,
        details={"restart_reason": reason, "start_delay": str(delay_ns)},
    )


def not_restarting(now_ns: int, reason: str, cause: str = "") -> TaskEvent:
    return TaskEvent(
        type=NOT_RESTARTING,
        time=now_ns,
        message=cause,
        display_message=reason,
        restart_reason=reason,
        fails_task=True,
        details={"restart_reason": reason, "fails_task": "true"},
    )


def killing(now_ns: int, timeout_ns: int, reason: str = "") -> TaskEvent:
    text = f"Sent interrupt. Waiting {go_duration(timeout_ns)} before force killing"
    return TaskEvent(
        type=KILLING,
        time=now_ns,
        display_message=text,
        kill_reason=reason,
        details={"kill_timeout": go_duration(timeout_ns), "kill_reason": reason},
    )


def killed(now_ns: int) -> TaskEvent:
    return _event(KILLED, now_ns, "Task successfully killed")


def driver_failure(now_ns: int, error: str) -> TaskEvent:
    return TaskEvent(
        type=DRIVER_FAILURE,
        time=now_ns,
        display_message=error or "Failed to start task",
        driver_error=error,
        details={"driver_error": error},
    )


def failed_validation(now_ns: int, error: str) -> TaskEvent:
    return TaskEvent(
        type=FAILED_VALIDATION,
        time=now_ns,
        display_message=error,
        fails_task=True,
        details={"validation_error": error, "fails_task": "true"},
    )


def setup_failure(now_ns: int, error: str) -> TaskEvent:
    return TaskEvent(
        type=SETUP_FAILURE,
        time=now_ns,
        display_message=error,
        fails_task=True,
        details={"setup_error": error, "fails_task": "true"},
    )


def sibling_failed(now_ns: int, sibling: str) -> TaskEvent:
    return TaskEvent(
        type=SIBLING_FAILED,
        time=now_ns,
        display_message=f'Task\'s sibling "{sibling}" failed',
        details={"failed_sibling": sibling},
    )


def leader_dead(now_ns: int) -> TaskEvent:
    return _event(LEADER_DEAD, now_ns, "Leader Task in Group dead")


def restart_signaled(now_ns: int, reason: str) -> TaskEvent:
    return TaskEvent(
        type=RESTART_SIGNAL,
        time=now_ns,
        display_message=reason,
        restart_reason=reason,
        details={"restart_reason": reason},
    )


def signaling(now_ns: int, signal: str, reason: str) -> TaskEvent:
    return TaskEvent(
        type=SIGNALING,
        time=now_ns,
        display_message=f"{reason}: sent {signal}" if reason else f"Sent {signal}",
        details={"signal": signal, "reason": reason},
    )


def template_rendered(now_ns: int, message: str) -> TaskEvent:
    return _event(TEMPLATE_RENDERED, now_ns, message)


def _event(kind: str, now_ns: int, text: str) -> TaskEvent:
    return TaskEvent(type=kind, time=now_ns, display_message=text)
