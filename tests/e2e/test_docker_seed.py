"""The seed job (``shared/fixtures/nginx.nomad``) verbatim on a real agent process over a real
private Docker engine, judged only through ``steppe`` and ``docker`` commands and HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.agent import (
    AgentProcess,
    config_agent,
    dev_agent,
    single_node_config,
)
from tests.support.waiting import wait_until

HERE = Path(__file__).resolve()
SHARED_SEED = HERE.parents[3] / "shared" / "fixtures" / "nginx.nomad"
LOCAL_SEED = HERE.parents[1] / "jobspec" / "fixtures" / "nginx.nomad"
ALLOC_LABEL = "com.steppe.alloc_id"


def seed_text() -> str:
    return (SHARED_SEED if SHARED_SEED.is_file() else LOCAL_SEED).read_text()


def docker(host: str, *args: str) -> str:
    """The docker CLI against the private engine only."""
    done = subprocess.run(
        ["docker", *args],
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def containers(host: str, *, stopped_too: bool = False) -> dict[str, str]:
    """Containers that carry an allocation label (running ones unless ``stopped_too``):
    container ID -> allocation ID."""
    out = docker(
        host,
        "ps",
        *(["-a"] if stopped_too else []),
        "--no-trunc",
        "--filter",
        f"label={ALLOC_LABEL}",
        "--format",
        '{{.ID}} {{.Label "' + ALLOC_LABEL + '"}}',
    )
    return dict(line.split() for line in out.splitlines() if line.strip())  # type: ignore[misc]


def allocs(agent: AgentProcess, job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = agent.get(f"/v1/job/{job}/allocations")
    return found


def running_allocs(agent: AgentProcess, job: str, count: int) -> list[dict[str, Any]] | None:
    live = [a for a in allocs(agent, job) if a["DesiredStatus"] == "run"]
    ok = len(live) == count and all(a["ClientStatus"] == "running" for a in live)
    return live if ok else None


def web_url(agent: AgentProcess, alloc_id: str) -> str:
    full = agent.get(f"/v1/allocation/{alloc_id}")
    ports = full["AllocatedResources"]["Shared"]["Ports"]
    web = next(p for p in ports if p["Label"] == "web")
    return f"http://{web['HostIP']}:{web['Value']}/"


def welcome(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200 and b"Welcome to nginx" in r.read()
    except (urllib.error.URLError, OSError):
        return False


def stop_job(agent: AgentProcess, host: str, job: str) -> None:
    """Stops ``job`` (purged, so the next test starts clean) and waits for its containers
    to be gone."""
    agent.cli("job", "stop", "-purge", job, check=False)
    wait_until(
        lambda: not containers(host, stopped_too=True),
        timeout=60,
        what=f"{job}'s containers removed",
    )


@pytest.fixture(scope="module")
def agent(private_dockerd: str) -> Iterator[AgentProcess]:
    with dev_agent("-region", "eu", "-dc", "ams2", env={"DOCKER_HOST": private_dockerd}) as a:
        yield a


def test_seed_job_runs_verbatim_on_docker(
    agent: AgentProcess, private_dockerd: str, tmp_path: Path
) -> None:
    job_file = tmp_path / "nginx.nomad"
    job_file.write_text(seed_text())
    try:
        agent.cli("job", "run", str(job_file))
        live = wait_until(
            lambda: running_allocs(agent, "nginx", 4), timeout=60, what="4 running allocations"
        )
        ids = {a["ID"] for a in live}
        assert set(containers(private_dockerd).values()) == ids
        for alloc_id in ids:
            url = web_url(agent, alloc_id)
            wait_until(lambda url=url: welcome(url), timeout=30, what=f"nginx at {url}")
            env = _container_env(private_dockerd, alloc_id)
            assert f"NOMAD_ADDR_web={url[len('http://') : -1]}" in env
        # nginx writes its access log to stdout: the request above reaches ``alloc logs``
        some = next(iter(ids))
        wait_until(
            lambda: '"GET / HTTP/1.1" 200' in agent.cli("alloc", "logs", some, "nginx").stdout,
            timeout=30,
            what="the access log in alloc logs",
        )

        agent.cli("job", "stop", "nginx")
        wait_until(
            lambda: not containers(private_dockerd, stopped_too=True),
            timeout=60,
            what="containers removed",
        )
        wait_until(
            lambda: all(a["ClientStatus"] == "complete" for a in allocs(agent, "nginx")),
            timeout=30,
            what="allocations complete",
        )
        assert {a["ID"] for a in allocs(agent, "nginx")} == ids
    finally:
        stop_job(agent, private_dockerd, "nginx")


def _container_env(host: str, alloc_id: str) -> list[str]:
    ids = docker(host, "ps", "-q", "--filter", f"label={ALLOC_LABEL}={alloc_id}").split()
    assert len(ids) == 1, ids
    env: list[str] = json.loads(docker(host, "inspect", "--format", "{{json .Config.Env}}", ids[0]))
    return env


def test_container_killed_behind_our_back_is_restarted_per_policy(
    agent: AgentProcess, private_dockerd: str, tmp_path: Path
) -> None:
    seed = seed_text()
    assert 'delay = "25s"' in seed and "count = 4" in seed
    job_file = tmp_path / "nginx.nomad"
    job_file.write_text(
        seed.replace('delay = "25s"', 'delay = "1s"').replace("count = 4", "count = 2")
    )
    try:
        agent.cli("job", "run", str(job_file))
        live = wait_until(
            lambda: running_allocs(agent, "nginx", 2), timeout=60, what="2 running allocations"
        )
        victim = live[0]["ID"]
        before = {c for c, a in containers(private_dockerd).items() if a == victim}
        assert len(before) == 1
        docker(private_dockerd, "kill", next(iter(before)))

        def restarted() -> dict[str, Any] | None:
            state = agent.get(f"/v1/allocation/{victim}")["TaskStates"]["nginx"]
            ok = state["State"] == "running" and state["Restarts"] == 1
            mine = [c for c, a in containers(private_dockerd).items() if a == victim]
            return state if ok and len(mine) == 1 else None

        state = wait_until(restarted, timeout=30, what="the killed task running again")
        types = [e["Type"] for e in state["Events"]]
        assert types[-3:] == ["Terminated", "Restarting", "Started"], types
        terminated = state["Events"][-3]
        assert terminated["ExitCode"] == 137 and "oom_killed" not in terminated["Details"], (
            terminated
        )
        url = web_url(agent, victim)
        wait_until(lambda: welcome(url), timeout=30, what=f"restarted nginx at {url}")
        assert agent.get(f"/v1/allocation/{victim}")["ClientStatus"] == "running"
        shown = agent.cli("alloc", "status", victim).stdout
        assert "Restarting" in shown and "Terminated" in shown
    finally:
        stop_job(agent, private_dockerd, "nginx")


SENTINEL = """
job "sentinel" {
  region      = "eu"
  datacenters = ["ams2"]
  group "g" {
    task "t" {
      driver = "docker"
      config {
        image   = "local/busybox:latest"
        command = "sleep"
        args    = ["3600"]
      }
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"""


def _prove_client_synced(agent: AgentProcess, host: str, job_file: Path) -> None:
    """Runs and stops a small job. The client handles server changes one pass at a time and
    removes orphans at the end of its first pass, so once this job's stop is carried out,
    anything the restarted agent would have started or removed has happened."""
    agent.cli("job", "run", str(job_file))
    alloc = wait_until(
        lambda: (running_allocs(agent, "sentinel", 1) or [None])[0],
        timeout=30,
        what="sentinel running",
    )
    wait_until(
        lambda: alloc["ID"] in containers(host).values(), timeout=30, what="sentinel container"
    )
    agent.cli("job", "stop", "-purge", "sentinel")
    wait_until(
        lambda: alloc["ID"] not in containers(host, stopped_too=True).values(),
        timeout=30,
        what="sentinel container removed",
    )


def test_agent_restart_keeps_the_same_containers(private_dockerd: str, tmp_path: Path) -> None:
    config = single_node_config(tmp_path, region="eu", datacenter="ams2")
    job_file = tmp_path / "nginx.nomad"
    job_file.write_text(seed_text())
    sentinel = tmp_path / "sentinel.nomad"
    sentinel.write_text(SENTINEL)
    env = {"DOCKER_HOST": private_dockerd}
    try:
        with config_agent(config, env=env, log_name="first.log") as first:
            first.cli("job", "run", str(job_file))
            live = wait_until(
                lambda: running_allocs(first, "nginx", 4), timeout=60, what="4 running allocs"
            )
            before = containers(private_dockerd)
            assert set(before.values()) == {a["ID"] for a in live}
        assert containers(private_dockerd) == before, "stopping the agent stopped containers"

        with config_agent(config, env=env, log_name="second.log") as second:
            _prove_client_synced(second, private_dockerd, sentinel)
            assert containers(private_dockerd) == before
            again = wait_until(
                lambda: running_allocs(second, "nginx", 4), timeout=30, what="4 running allocs"
            )
            assert {a["ID"] for a in again} == set(before.values())
            for alloc in again:
                state = second.get(f"/v1/allocation/{alloc['ID']}")["TaskStates"]["nginx"]
                assert state["Restarts"] == 0
                assert [e["Type"] for e in state["Events"]].count("Started") == 1
                url = web_url(second, alloc["ID"])
                wait_until(lambda url=url: welcome(url), timeout=30, what=f"nginx at {url}")
            second.cli("job", "stop", "-purge", "nginx")
            wait_until(
                lambda: not containers(private_dockerd, stopped_too=True),
                timeout=60,
                what="containers removed",
            )
    finally:
        _remove_labelled(private_dockerd)


def _remove_labelled(host: str) -> None:
    """What an agent that failed half-way left: our containers only (by label)."""
    ids = list(containers(host, stopped_too=True))
    if ids:
        docker(host, "rm", "-f", "-v", *ids)
