"""Alloc runners over the real raw_exec driver: restarts, env, kills, services."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from tests.client._support import (
    RecordingRegistrar,
    make_alloc,
    make_job,
    pid_alive,
    sh_task,
    until,
)
from tests.client.conftest import MakeRunner

from steppe.client import AllocRunner
from steppe.structs import (
    NS,
    AllocatedPortMapping,
    RestartPolicy,
    Service,
    ServiceCheck,
)


async def run_to_end(runner: AllocRunner, timeout: float = 30.0) -> None:
    runner.start()
    await asyncio.wait_for(runner.wait(), timeout)


def event_types(runner: AllocRunner, task: str) -> list[str]:
    return [e.type for e in runner.runners[task].state.events]


async def test_failing_task_restarts_per_policy_then_fails(make_runner: MakeRunner) -> None:
    job = make_job(sh_task("web", "echo hi; exit 1"))
    runner = make_runner(make_alloc(job))
    await run_to_end(runner)
    state = runner.runners["web"].state
    assert (state.state, state.failed, state.restarts) == ("dead", True, 2)
    assert state.last_restart and state.finished_at and state.started_at
    assert runner.status() == ("failed", "Failed tasks")
    assert event_types(runner, "web") == [
        "Task Setup",
        "Started",
        "Terminated",
        "Restarting",
        "Started",
        "Terminated",
        "Restarting",
        "Started",
        "Terminated",
        "Not Restarting",
    ], "the oldest event (Received) falls out: Nomad keeps the last 10"
    events = state.events
    restarts = [e for e in events if e.type == "Restarting"]
    assert [e.display_message for e in restarts] == ["Exit status 1 - Task restarting in 50ms"] * 2
    assert events[-1].type == "Not Restarting"
    assert events[-1].display_message == (
        'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'
    )
    assert events[-1].fails_task
    assert events[-2].display_message == "Exit Code: 1"
    log = runner.alloc_dir.log_path("web", "stdout").read_text()
    assert log == "hi\n" * 3


async def test_batch_task_exiting_zero_completes_with_env(make_runner: MakeRunner) -> None:
    task = sh_task(
        "printer",
        "env | sort",
        env={"LISTEN": "${NOMAD_ADDR_http}", "DC": "${node.datacenter}", "RACK": "${meta.rack}"},
        meta={"tier": "gold"},
    )
    job = make_job(task, job_type="batch")
    port = AllocatedPortMapping(label="http", value=23456, to=0, host_ip="127.0.0.1")
    alloc = make_alloc(job, ports=[port])
    runner = make_runner(alloc)
    await run_to_end(runner)
    assert runner.status() == ("complete", "All tasks have completed")
    state = runner.runners["printer"].state
    assert (state.failed, state.restarts) == (False, 0)
    assert [e.type for e in state.events] == ["Received", "Task Setup", "Started", "Terminated"]
    text = runner.alloc_dir.log_path("printer", "stdout").read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    task_dir = runner.alloc_dir.task_dir("printer")
    expected = {
        "ALLOC_ID": alloc.id,
        "ALLOC_NAME": "web.frontend[1]",
        "ALLOC_INDEX": "1",
        "JOB_ID": "web",
        "JOB_NAME": "web",
        "GROUP_NAME": "frontend",
        "TASK_NAME": "printer",
        "DC": "dc1",
        "REGION": "global",
        "NAMESPACE": "default",
        "ALLOC_DIR": str(runner.alloc_dir.shared),
        "TASK_DIR": str(task_dir / "local"),
        "SECRETS_DIR": str(task_dir / "secrets"),
        "CPU_LIMIT": "100",
        "MEMORY_LIMIT": "300",
        "PORT_http": "23456",
        "HOST_PORT_http": "23456",
        "IP_http": "127.0.0.1",
        "ADDR_http": "127.0.0.1:23456",
        "HOST_ADDR_http": "127.0.0.1:23456",
        "META_owner": "ops",
        "META_tier": "gold",
    }
    for key, value in expected.items():
        assert env.get(f"NOMAD_{key}") == value, key
        assert env.get(f"STEPPE_{key}") == value, key
    assert (env["LISTEN"], env["DC"], env["RACK"]) == ("127.0.0.1:23456", "dc1", "r1")
    for sub in ("alloc/logs", "alloc/data", "alloc/tmp", "printer/local", "printer/secrets"):
        assert (runner.alloc_dir.root / sub).is_dir()


async def test_desired_stop_kills_the_task_and_completes(make_runner: MakeRunner) -> None:
    job = make_job(sh_task("web", "echo up; exec sleep 300"))
    alloc = make_alloc(job)
    runner = make_runner(alloc)
    runner.start()
    task = runner.runners["web"]
    await until(lambda: task.state.state == "running", "task running")
    assert runner.status()[0] == "running"
    assert task.handle is not None
    pid = int(task.handle.state["task_pid"])
    assert pid_alive(pid)
    runner.update(msgspec.structs.replace(alloc, job=None, desired_status="stop"))
    await asyncio.wait_for(runner.wait(), 30)
    assert not pid_alive(pid)
    assert event_types(runner, "web")[-3:] == ["Killing", "Terminated", "Killed"]
    assert runner.runners["web"].state.events[-3].display_message == (
        "Sent interrupt. Waiting 2s before force killing"
    )
    assert runner.status() == ("complete", "All tasks have completed")
    assert runner.alloc.job is job


async def test_services_registered_while_running(make_runner: MakeRunner) -> None:
    check = ServiceCheck(type="http", path="/health", interval=10 * NS, timeout=2 * NS)
    task = sh_task(
        "web",
        "exec sleep 300",
        services=(Service(name="${JOB}-api", port_label="http", tags=("v1",), checks=(check,)),),
    )
    group_service = Service(
        name="web-group", port_label="http", checks=(ServiceCheck(type="tcp", interval=NS),)
    )
    job = make_job(task, services=[group_service])
    port = AllocatedPortMapping(label="http", value=25000, host_ip="127.0.0.2")
    alloc = make_alloc(job, ports=[port])
    registrar = RecordingRegistrar()
    runner = make_runner(alloc, services=registrar)
    runner.start()
    task_sid = f"_nomad-task-{alloc.id}-web-web-api-http"
    group_sid = f"_nomad-task-{alloc.id}-group-frontend-web-group-http"
    await until(lambda: {task_sid, group_sid} <= registrar.services.keys(), "registrations")
    reg = registrar.services[task_sid]
    assert (reg.name, reg.address, reg.port, reg.tags) == ("web-api", "127.0.0.2", 25000, ["v1"])
    (http,) = reg.checks
    assert (http.http, http.interval, http.timeout) == (
        "http://127.0.0.2:25000/health",
        "10s",
        "2s",
    )
    body = msgspec.json.decode(msgspec.json.encode(reg))
    assert body["ID"] == task_sid and body["Checks"][0]["HTTP"] == http.http
    assert registrar.services[group_sid].checks[0].tcp == "127.0.0.2:25000"
    runner.kill("stop")
    await asyncio.wait_for(runner.wait(), 30)
    assert registrar.services == {}


async def test_failed_task_takes_its_sibling_down(make_runner: MakeRunner) -> None:
    policy = RestartPolicy(attempts=0, interval=60 * NS, delay=NS, mode="fail")
    job = make_job(sh_task("main", "exec sleep 300"), sh_task("helper", "exit 3"), policy=policy)
    runner = make_runner(make_alloc(job))
    await run_to_end(runner)
    assert runner.status() == ("failed", "Failed tasks")
    helper, main = runner.runners["helper"].state, runner.runners["main"].state
    assert helper.failed and helper.events[-1].display_message == "Policy allows no restarts"
    assert not main.failed and main.state == "dead"
    sibling = [e for e in main.events if e.type == "Sibling Task Failed"]
    assert sibling and sibling[0].display_message == 'Task\'s sibling "helper" failed'


async def test_unknown_driver_and_bad_config_fail_clearly(make_runner: MakeRunner) -> None:
    from steppe.structs import Task

    job = make_job(
        Task(name="a", driver="nonesuch", config={}),
        Task(name="b", driver="raw_exec", config={"args": ["x"]}),
    )
    runner = make_runner(make_alloc(job))
    await run_to_end(runner)
    a, b = runner.runners["a"].state, runner.runners["b"].state
    assert a.failed and a.events[-1].type == "Driver Failure"
    assert a.events[-1].display_message == "driver 'nonesuch' is not available on this node"
    assert b.failed and b.events[-1].type == "Failed Validation"
    assert "config.command: required" in b.events[-1].display_message


async def test_missing_job_fails_the_alloc(make_runner: MakeRunner, tmp_path: Path) -> None:
    alloc = msgspec.structs.replace(make_alloc(make_job(sh_task("a", "true"))), job=None)
    runner = make_runner(alloc)
    await run_to_end(runner)
    status, description = runner.status()
    assert status == "failed" and "without its job" in description
