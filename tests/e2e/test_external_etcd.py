"""``etcd { endpoints = [...] }``: a server keeps its state in an etcd cluster it did not
start, starts no member of its own, and reports that cluster's members as its peers."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.agent import AgentConfigFile, config_agent, single_node_config
from tests.support.cluster import processes_under
from tests.support.etcd import running_etcd

JOB = """
job "kept" {
  datacenters = ["dc1"]
  group "g" {
    count = 0
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"""

pytestmark = pytest.mark.timeout(180)


def test_a_server_on_an_external_etcd_cluster(tmp_path: Path) -> None:
    job_file = tmp_path / "kept.nomad"
    job_file.write_text(JOB)
    with running_etcd(tmp_path / "etcd", 3) as etcd:
        first = on_etcd(tmp_path / "first", etcd.endpoints)

        with config_agent(first) as agent:
            agent.cli("job", "run", "-detach", str(job_file))
            peers = agent.cli("operator", "raft", "list-peers").stdout.splitlines()[1:]
            assert sorted(row.split()[0] for row in peers) == ["m0", "m1", "m2"]
            assert sum(row.split()[3] == "leader" for row in peers) == 1
            raft = agent.get("/v1/operator/raft/configuration")
            assert {s["Address"] for s in raft["Servers"]} == {m.peer_url for m in etcd.members}
            assert not [p for p in processes_under(first.data_dir) if _is_etcd(p)]

        # another server with nothing on its disk finds the job in the same etcd
        second = on_etcd(tmp_path / "second", etcd.endpoints)
        with config_agent(second) as agent:
            status = agent.cli("job", "status", "kept").stdout
            assert "kept" in status and "service" in status


def on_etcd(workdir: Path, endpoints: list[str]) -> AgentConfigFile:
    workdir.mkdir()
    config = single_node_config(workdir)
    listed = ", ".join(f'"http://{e}"' for e in endpoints)
    with config.path.open("a") as f:
        f.write(f"etcd {{\n  endpoints = [{listed}]\n}}\n")
    return config


def _is_etcd(pid: int) -> bool:
    try:
        return b"etcd" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
