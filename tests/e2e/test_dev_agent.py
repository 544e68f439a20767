"""``steppe agent -dev`` as a separate process, driven only through the CLI and HTTP:
the newcomer's path from the README."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.agent import AgentProcess, dev_agent
from tests.support.waiting import wait_until

WEB_JOB = """
job "web" {
  datacenters = ["dc1"]
  group "web" {
    count = 3
    network {
      port "http" {}
    }
    task "server" {
      driver = "raw_exec"
      config {
        command = "/bin/busybox"
        args    = ["httpd", "-f", "-p", "127.0.0.1:${NOMAD_PORT_http}", "-h", "${NOMAD_TASK_DIR}"]
      }
      env {
        GREETING = "hello from ${NOMAD_ALLOC_ID}"
      }
      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
}
"""

FAILING_JOB = """
job "flaky" {
  datacenters = ["dc1"]
  group "g" {
    restart {
      attempts = 2
      interval = "10m"
      delay    = "100ms"
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo going down >&2; exit 3"]
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with dev_agent() as a:
        yield a


def _allocs(agent: AgentProcess, job: str) -> list[dict[str, object]]:
    result: list[dict[str, object]] = agent.get(f"/v1/job/{job}/allocations")
    return result


def test_web_job_runs_answers_and_stops(agent: AgentProcess, tmp_path: Path) -> None:
    job_file = tmp_path / "web.hcl"
    job_file.write_text(WEB_JOB)
    run = agent.cli("job", "run", str(job_file))
    assert 'finished with status "complete"' in run.stdout

    def all_running() -> bool:
        allocs = _allocs(agent, "web")
        return len(allocs) == 3 and all(a["ClientStatus"] == "running" for a in allocs)

    wait_until(all_running, timeout=60, what="3 running allocations")
    status = agent.cli("job", "status", "web").stdout
    assert "Status        = running" in status
    assert status.count("running") >= 4

    for alloc in _allocs(agent, "web"):
        full = agent.get(f"/v1/allocation/{alloc['ID']}")
        ports = full["AllocatedResources"]["Shared"]["Ports"]
        assert [p["Label"] for p in ports] == ["http"]
        url = f"http://{ports[0]['HostIP']}:{ports[0]['Value']}/"
        # busybox httpd serves the task dir: it answers 404 for "/" with no index, which
        # still proves the task listens on the port the scheduler assigned
        code = _status_of(url)
        assert code in (200, 404), url
        shown = agent.cli("alloc", "status", str(alloc["ID"])).stdout
        assert f"127.0.0.1:{ports[0]['Value']}" in shown and 'Task "server" is "running"' in shown

    agent.cli("job", "stop", "web")
    wait_until(
        lambda: all(a["ClientStatus"] == "complete" for a in _allocs(agent, "web")),
        timeout=60,
        what="allocations stopped",
    )
    assert agent.get("/v1/job/web")["Status"] == "dead"


def _status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_failing_task_restarts_per_policy_then_fails(agent: AgentProcess, tmp_path: Path) -> None:
    job_file = tmp_path / "flaky.hcl"
    job_file.write_text(FAILING_JOB)
    agent.cli("job", "run", "-detach", str(job_file))

    def failed() -> dict[str, object] | None:
        allocs = _allocs(agent, "flaky")
        return allocs[0] if allocs and allocs[0]["ClientStatus"] == "failed" else None

    alloc = wait_until(failed, timeout=60, what="allocation failed")
    state = agent.get(f"/v1/allocation/{alloc['ID']}")["TaskStates"]["t"]
    assert state["Restarts"] == 2 and state["Failed"] is True
    types = [e["Type"] for e in state["Events"]]
    assert types.count("Restarting") == 2 and "Not Restarting" in types
    restart = next(e for e in state["Events"] if e["Type"] == "Restarting")
    assert "3" in restart["DisplayMessage"] or "3" in restart["RestartReason"] + str(
        restart["ExitCode"]
    )
    logs = agent.cli("alloc", "logs", "-stderr", str(alloc["ID"]), "t").stdout
    assert logs.count("going down") == 3


def test_node_status_and_cli_errors(agent: AgentProcess, tmp_path: Path) -> None:
    nodes = agent.cli("node", "status").stdout
    assert "dc1" in nodes and "ready" in nodes
    own = agent.cli("node", "status", "-self").stdout
    assert "raw_exec" in own and "Allocated Resources" in own
    missing = agent.cli("job", "status", "no-such-job", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.hcl"
    bad.write_text('job "x" {\n  group "g" {\n    count = -1\n  }\n}\n')
    result = agent.cli("job", "run", str(bad), check=False)
    assert (
        result.returncode == 1 and "bad.hcl:3" in result.stderr and "Traceback" not in result.stderr
    )


def test_http_api_shapes_and_blocking_queries(agent: AgentProcess) -> None:
    leader = agent.get("/v1/status/leader")
    assert leader.endswith(":4647")
    req = urllib.request.Request(agent.address + "/v1/jobs?index=1&wait=100ms")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert int(r.headers["X-Nomad-Index"]) >= 1
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(agent.address + "/v1/jobs?index=abc", timeout=30)
    assert bad.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(agent.address + "/v1/allocation/does-not-exist", timeout=30)
    assert missing.value.code == 404


def test_job_plan_says_what_would_change_and_why_not(agent: AgentProcess, tmp_path: Path) -> None:
    job_file = tmp_path / "planned.hcl"
    job_file.write_text(WEB_JOB.replace('job "web"', 'job "planned"'))
    fresh = agent.cli("job", "plan", str(job_file), check=False)
    assert fresh.returncode == 1 and "3 place" in fresh.stdout
    assert "All tasks successfully allocated" in fresh.stdout
    agent.cli("job", "run", "-detach", str(job_file))
    wait_until(lambda: len(_allocs(agent, "planned")) == 3, timeout=60, what="placed")
    same = agent.cli("job", "plan", str(job_file), check=False)
    assert same.returncode == 0 and "3 ignore" in same.stdout
    windows = tmp_path / "windows.hcl"
    windows.write_text(
        WEB_JOB.replace('job "web"', 'job "win"').replace(
            'datacenters = ["dc1"]',
            'datacenters = ["dc1"]\n  constraint {\n    attribute = "${attr.kernel.name}"\n'
            '    value = "windows"\n  }',
        )
    )
    refused = agent.cli("job", "plan", str(windows), check=False)
    assert "Failed to place all allocations" in refused.stdout
    assert "filtered by constraint ${attr.kernel.name} = windows" in refused.stdout
    agent.cli("job", "stop", "-purge", "planned")


def test_jobs_parse_endpoint(agent: AgentProcess) -> None:
    body = json.dumps({"JobHCL": WEB_JOB, "Canonicalize": True}).encode()
    req = urllib.request.Request(agent.address + "/v1/jobs/parse", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        job = json.loads(r.read())
    assert job["ID"] == "web" and job["TaskGroups"][0]["Count"] == 3
    assert job["TaskGroups"][0]["Networks"][0]["DynamicPorts"][0]["Label"] == "http"
    broken = json.dumps({"JobHCL": 'job "x" {\n  group "g" {\n    count = "three"\n  }\n}\n'})
    req = urllib.request.Request(
        agent.address + "/v1/jobs/parse", data=broken.encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(req, timeout=30)
    assert bad.value.code == 400 and "count" in bad.value.read().decode()
