"""Periodic and parameterized jobs through a real ``steppe agent -dev`` process, driven
only through the CLI and HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.agent import AgentProcess, dev_agent
from tests.support.waiting import wait_until

INVOICE_JOB = """
job "invoice" {
  datacenters = ["dc1"]
  type        = "batch"
  parameterized {
    payload       = "required"
    meta_required = ["customer"]
  }
  group "g" {
    task "print" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat $NOMAD_TASK_DIR/input.txt; echo \\" for $NOMAD_META_customer\\""]
      }
      dispatch_payload {
        file = "input.txt"
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
"""

REPORT_JOB = """
job "report" {
  datacenters = ["dc1"]
  type        = "batch"
  periodic {
    cron             = "%s"
    prohibit_overlap = true
  }
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo report done"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with dev_agent() as a:
        yield a


def job_url(job_id: str, *rest: str) -> str:
    return "/".join(("/v1/job", urllib.parse.quote(job_id, safe=""), *rest))


def post(agent: AgentProcess, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        agent.address + path, data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def field(status: str, name: str) -> str:
    """A ``Name = value`` line of ``job status`` output, whatever its alignment."""
    for line in status.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} line in:\n{status}")


def completed_alloc(agent: AgentProcess, job_id: str) -> dict[str, Any] | None:
    allocs: list[dict[str, Any]] = agent.get(job_url(job_id, "allocations"))
    done = [a for a in allocs if a["ClientStatus"] == "complete"]
    return done[0] if done else None


def test_dispatch_runs_a_child_with_payload_and_meta(agent: AgentProcess, tmp_path: Path) -> None:
    job_file = tmp_path / "invoice.hcl"
    job_file.write_text(INVOICE_JOB)
    run = agent.cli("job", "run", str(job_file))
    assert "Job registration successful" in run.stdout
    assert agent.get(job_url("invoice", "evaluations")) == []

    refused = agent.cli("job", "dispatch", "invoice", check=False)
    assert refused.returncode == 1
    assert "Payload: this job requires a payload" in refused.stderr
    assert "Meta: required keys missing: customer" in refused.stderr

    payload = tmp_path / "input.txt"
    payload.write_text("invoice #42")
    out = agent.cli("job", "dispatch", "-meta", "customer=acme", "-detach", "invoice", str(payload))
    child = out.stdout.split("Dispatched Job ID", 1)[1].split("=", 1)[1].split()[0]
    assert child.startswith("invoice/dispatch-")
    alloc = wait_until(lambda: completed_alloc(agent, child), what="the dispatched child done")
    logs = agent.cli("alloc", "logs", alloc["ID"], "print").stdout
    assert logs.strip() == "invoice #42 for acme"

    stored = agent.get(job_url(child))
    assert stored["ParentID"] == "invoice" and stored["Dispatched"] is True
    assert stored["Meta"]["customer"] == "acme"
    status = agent.cli("job", "status", "invoice").stdout
    assert field(status, "Parameterized") == "true"
    assert field(status, "Periodic") == "false"
    assert field(status, "Status") == "running"
    assert child in status and "Dispatched Jobs" in status


def test_dispatch_api_shape_and_bad_requests(agent: AgentProcess) -> None:
    code, body = post(agent, job_url("invoice", "dispatch"), {"Payload": "aGk=", "Meta": {}})
    assert code == 400 and "required keys missing: customer" in body
    code, body = post(agent, job_url("invoice", "dispatch"), {"Payload": "%%%"})
    assert code == 400 and "Payload: not valid base64" in body
    code, body = post(agent, job_url("nope", "dispatch"), {})
    assert code == 404
    code, body = post(
        agent, job_url("invoice", "dispatch"), {"Payload": "aGk=", "Meta": {"customer": "x"}}
    )
    assert code == 200
    assert set(body) == {
        "DispatchedJobID",
        "EvalID",
        "EvalCreateIndex",
        "JobCreateIndex",
        "Index",
    }


def test_periodic_force_launches_a_child(agent: AgentProcess, tmp_path: Path) -> None:
    job_file = tmp_path / "report.hcl"
    job_file.write_text(REPORT_JOB % "0 3 1 1 *")
    run = agent.cli("job", "run", str(job_file))
    assert "Approximate next launch time:" in run.stdout
    forced = agent.cli("job", "periodic", "force", "report")
    assert "Monitoring evaluation" in forced.stdout
    children = [j for j in agent.get("/v1/jobs") if j["ParentID"] == "report"]
    assert len(children) == 1 and children[0]["ID"].startswith("report/periodic-")
    wait_until(lambda: completed_alloc(agent, children[0]["ID"]), what="the forced child done")
    status = agent.cli("job", "status", "report").stdout
    assert field(status, "Periodic") == "true"
    assert "-01-01T03:00:00Z (" in field(status, "Next Periodic Launch")
    assert "Previously Launched Jobs" in status and children[0]["ID"] in status
    stub = next(j for j in agent.get("/v1/jobs") if j["ID"] == "report")
    assert stub["Periodic"] is True and stub["Status"] == "running"

    code, body = post(agent, job_url("invoice", "periodic", "force"), {})
    assert code == 400 and "not a periodic job" in body


def test_the_leader_launches_on_schedule(agent: AgentProcess, tmp_path: Path) -> None:
    job_file = tmp_path / "tick.hcl"
    job_file.write_text((REPORT_JOB % "*/2 * * * * * *").replace('"report"', '"tick"'))
    agent.cli("job", "run", str(job_file))

    def launched() -> list[dict[str, Any]]:
        return [j for j in agent.get("/v1/jobs") if j["ParentID"] == "tick"]

    first = wait_until(launched, timeout=20, what="a child launched by the schedule")
    wait_until(lambda: completed_alloc(agent, first[0]["ID"]), what="the scheduled child done")
    agent.cli("job", "stop", "-detach", "tick")
    assert agent.get(job_url("tick"))["Status"] == "dead"
