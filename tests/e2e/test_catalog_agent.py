"""The Consul half through ``steppe agent -dev``: the seed's KV lines, task services
in the catalog and in DNS (live instances only), and task templates fed by the catalog."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.agent import AgentProcess, dev_agent
from tests.support.waiting import wait_until

SERVICE_JOB = """
job "web" {
  datacenters = ["dc1"]
  group "web" {
    count = 3
    restart {
      attempts = 5
      interval = "5m"
      delay    = "2s"
      mode     = "delay"
    }
    network {
      port "http" {}
    }
    service {
      name = "web"
      port = "http"
      tags = ["v1"]
      check {
        type     = "tcp"
        interval = "500ms"
        timeout  = "1s"
      }
    }
    task "server" {
      driver = "raw_exec"
      config {
        command = "/bin/busybox"
        args    = ["httpd", "-f", "-p", "127.0.0.1:${NOMAD_PORT_http}"]
      }
    }
  }
}
"""

LB_JOB = """
job "lb" {
  datacenters = ["dc1"]
  group "lb" {
    task "render" {
      driver = "raw_exec"
      config {
        command = "/bin/busybox"
        args    = ["sleep", "3600"]
      }
      template {
        data        = <<EOT
{% for s in service('web') %}server {{ s.Address }}:{{ s.Port }}
{% endfor %}
EOT
        destination = "local/backends.txt"
        change_mode = "noop"
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with dev_agent() as a:
        yield a


def _curl(*args: str) -> str:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, check=True).stdout


def test_seed_kv_curl_lines(agent: AgentProcess) -> None:
    assert _curl("-X", "PUT", "-d", "myvalue", f"{agent.catalog}/v1/kv/mykey") == "true"
    assert '"Value":"bXl2YWx1ZQ=="' in _curl(f"{agent.catalog}/v1/kv/mykey")
    assert "No path to datacenter" in _curl(f"{agent.catalog}/v1/kv/mykey?dc=nowhere")
    assert _curl(f"{agent.catalog}/v1/catalog/datacenters") == '["dc1"]'


def _srv_ports(agent: AgentProcess, name: str) -> set[int]:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(agent.dns_port), f"{name}.service.consul", "SRV", "+short"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(line.split()[2]) for line in out.splitlines() if line.strip()}


def _task_pid_on(port: int) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"httpd -f -p 127.0.0.1:{port}"], capture_output=True, text=True
    )
    return int(out.stdout.split()[0])


def test_services_reach_dns_and_leave_it_while_dead(agent: AgentProcess, tmp_path: Path) -> None:
    (tmp_path / "web.hcl").write_text(SERVICE_JOB)
    agent.cli("job", "run", "-detach", str(tmp_path / "web.hcl"))

    def three() -> set[int] | None:
        found = _srv_ports(agent, "web")
        return found if len(found) == 3 else None

    ports = wait_until(three, timeout=60, what="3 instances in DNS")
    assert _srv_ports(agent, "v1.web") == ports
    passing = agent.get("/v1/health/service/web?passing", base=agent.catalog)
    assert {e["Service"]["Port"] for e in passing} == ports

    victim = sorted(ports)[0]
    os.kill(_task_pid_on(victim), signal.SIGKILL)
    wait_until(lambda: victim not in _srv_ports(agent, "web"), timeout=30, what="dead one gone")
    assert len(_srv_ports(agent, "web")) >= 2
    # the restart policy brings it back on the same port; its check passes again
    wait_until(lambda: victim in _srv_ports(agent, "web"), timeout=60, what="back in DNS")


def test_task_template_follows_the_catalog(agent: AgentProcess, tmp_path: Path) -> None:
    wait_until(lambda: len(_srv_ports(agent, "web")) == 3, timeout=60, what="web job running")
    (tmp_path / "lb.hcl").write_text(LB_JOB)
    agent.cli("job", "run", "-detach", str(tmp_path / "lb.hcl"))

    def rendered() -> str | None:
        allocs = agent.get("/v1/job/lb/allocations")
        if not allocs or allocs[0]["ClientStatus"] != "running":
            return None
        url = f"{agent.address}/v1/client/fs/cat/{allocs[0]['ID']}?path=render/local/backends.txt"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return str(r.read().decode())
        except urllib.error.HTTPError:
            return None

    text = wait_until(
        lambda: (t := rendered()) and t.count("server") == 3 and t, timeout=60, what="3 backends"
    )
    assert all(f":{p}" in text for p in _srv_ports(agent, "web"))
    agent.cli("job", "stop", "web")
    wait_until(
        lambda: (t := rendered()) is not None and "server" not in t, timeout=60, what="empty list"
    )
