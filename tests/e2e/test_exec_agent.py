"""Resource limits end to end: the same jobs under ``exec`` and ``docker`` on a real agent
process, judged through ``steppe`` commands, HTTP and the kernel's own cgroup accounting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.agent import AgentProcess, dev_agent
from tests.support.waiting import wait_until

from steppe.drivers._cgroups import Cgroup, detect
from steppe.drivers._cpu import CFS_PERIOD_US, cfs_quota_us

pytestmark = pytest.mark.root

DRIVERS = ("exec", "docker")
HOG = "head -c 300000000 /dev/zero | tail -c 300000000 >/dev/null"
"""``tail -c`` must hold 300 MB of a pipe in memory to print its end."""
SPIN = "while :; do :; done"

GROUP = """
  group "%(driver)s" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "t" {
      driver = "%(driver)s"
      kill_timeout = "1s"
      config {
        %(image)s
        command = "/bin/sh"
        args    = ["-c", "%(script)s"]
      }
      resources {
        cpu    = %(cpu)d
        memory = %(memory)d
      }
    }
  }
"""


def job(name: str, script: str, *, cpu: int = 100, memory: int = 32) -> str:
    """One group per driver, each running the same shell command."""
    groups = "".join(
        GROUP
        % {
            "driver": driver,
            "image": 'image = "local/busybox:latest"' if driver == "docker" else "",
            "script": script,
            "cpu": cpu,
            "memory": memory,
        }
        for driver in DRIVERS
    )
    return f'job "{name}" {{\n  datacenters = ["dc1"]\n{groups}}}\n'


@pytest.fixture(scope="module")
def agent(private_dockerd: str) -> Iterator[AgentProcess]:
    with dev_agent(env={"DOCKER_HOST": private_dockerd}) as a:
        nodes = a.get("/v1/nodes")
        drivers = a.get(f"/v1/node/{nodes[0]['ID']}")["Drivers"]
        missing = [d for d in DRIVERS if not drivers.get(d, {}).get("Detected")]
        if missing:
            pytest.skip(f"drivers not detected on this machine: {missing}")
        yield a


def by_group(agent: AgentProcess, job_id: str) -> dict[str, dict[str, Any]]:
    return {a["TaskGroup"]: a for a in agent.get(f"/v1/job/{job_id}/allocations")}


def run(agent: AgentProcess, tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / f"{name}.nomad"
    path.write_text(text)
    agent.cli("job", "run", "-detach", str(path))


def test_memory_hog_is_oom_killed_and_reported_under_both_drivers(
    agent: AgentProcess, tmp_path: Path
) -> None:
    run(agent, tmp_path, "hog", job("hog", HOG, memory=32))
    try:

        def failed() -> dict[str, dict[str, Any]] | None:
            allocs = by_group(agent, "hog")
            done = len(allocs) == 2 and all(a["ClientStatus"] == "failed" for a in allocs.values())
            return allocs if done else None

        allocs = wait_until(failed, timeout=60, what="both hogs failed")
        for driver, stub in allocs.items():
            state = agent.get(f"/v1/allocation/{stub['ID']}")["TaskStates"]["t"]
            terminated = [e for e in state["Events"] if e["Type"] == "Terminated"]
            assert len(terminated) == 1, (driver, state["Events"])
            assert terminated[0]["Details"].get("oom_killed") == "true", (driver, terminated)
            assert "OOM Killed" in terminated[0]["DisplayMessage"], (driver, terminated)
            shown = agent.cli("alloc", "status", stub["ID"]).stdout
            assert "OOM Killed" in shown, (driver, shown)
    finally:
        agent.cli("job", "stop", "-purge", "hog", check=False)


def task_cgroup(alloc_id: str, marker: bytes) -> Cgroup | None:
    """The cgroup of the allocation's process whose command line holds ``marker``, read
    from /proc, as an operator would find it: the driver's own view is not consulted."""
    layout = detect()
    assert layout is not None
    wanted = f"NOMAD_ALLOC_ID={alloc_id}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker not in (proc / "cmdline").read_bytes():
                continue
            if wanted not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            lines = (proc / "cgroup").read_text().splitlines()
        except OSError:
            continue
        paths: dict[str, str] = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else ["unified"]:
                hierarchy = layout.hierarchies.get(name)
                if hierarchy is not None:
                    paths[name] = str(hierarchy.mountpoint / path.lstrip("/"))
        return Cgroup(layout.version, paths)
    return None


def test_cpu_bound_task_is_held_to_its_share_under_both_drivers(
    agent: AgentProcess, tmp_path: Path
) -> None:
    run(agent, tmp_path, "spin", job("spin", SPIN, cpu=100, memory=32))
    try:

        def running() -> dict[str, dict[str, Any]] | None:
            allocs = by_group(agent, "spin")
            up = len(allocs) == 2 and all(a["ClientStatus"] == "running" for a in allocs.values())
            return allocs if up else None

        allocs = wait_until(running, timeout=60, what="both spinners running")
        share = cfs_quota_us(100) / CFS_PERIOD_US
        for driver, stub in allocs.items():
            cgroup = wait_until(
                lambda stub=stub: task_cgroup(stub["ID"], b"while :"),
                timeout=30,
                what=f"the {driver} spinner's cgroup",
            )
            stat = wait_until(
                lambda cgroup=cgroup: (
                    s if (s := cgroup.cpu_stat()).get("nr_periods", 0) >= 10 else None
                ),
                timeout=30,
                what=f"10 CFS periods of the {driver} spinner",
            )
            used_ns = cgroup.cpu_usage_ns()
            periods_ns = cgroup.cpu_stat()["nr_periods"] * CFS_PERIOD_US * 1000
            assert stat["nr_throttled"] > 0, (driver, stat)
            assert used_ns / periods_ns < 3 * share, (driver, used_ns, periods_ns, share)
    finally:
        agent.cli("job", "stop", "-purge", "spin", check=False)
