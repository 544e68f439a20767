"""The seed ``multi-datacenter-nomad-consul.md``, step by step, on five machines that are
network namespaces (tests/support/netns.py), each agent a separate process inside its own.

The machines are the document's: ams2-server-01 and lon1-server-01 run a catalog server
(``consul-server.json``) and a scheduler server (``nomad-server.hcl``); ams2-server-02 runs
a scheduler server only, its ``consul`` block pointing at ams2-server-01's catalog as the
document says; ams2-client and lon1-client run a scheduler client (``nomad-client.hcl``)
pointing at their datacenter's catalog server. The fixture files are used as they are,
with the document's placeholders (datacenter, node name, IP addresses) filled in and a
temp ``data_dir`` per machine instead of ``/tmp/nomad`` and ``/tmp/consul``.

Two departures, both forced by the machine, not by Steppe: no Docker engine runs inside
the namespaces, so the clients add ``plugin "raw_exec"`` and the job's one task runs
``busybox httpd`` under raw_exec (the rest of the job is the document's, unchanged); and
every command of the document (``curl localhost:8500...``, ``nomad server-members``...)
runs on the machine the document runs it on, as ``steppe`` instead of ``consul``/``nomad``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.netns import Network, network
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path("/work/shared/fixtures")
AMS_SERVER, LON_SERVER, AMS_SERVER_2 = "ams2-server-01", "lon1-server-01", "ams2-server-02"
AMS_CLIENT, LON_CLIENT = "ams2-client", "lon1-client"
MACHINES = (AMS_SERVER, LON_SERVER, AMS_SERVER_2, AMS_CLIENT, LON_CLIENT)
CATALOG_OF = {"ams2": AMS_SERVER, "lon1": LON_SERVER}

RAW_EXEC_PLUGIN = """
plugin "raw_exec" {
  config {
    enabled = true
  }
}
"""

# the document's task as a raw_exec task: the same port label, service and resources
HTTPD = (
    'echo "nginx ${NOMAD_ALLOC_NAME} in ${NOMAD_DC}" > ${NOMAD_TASK_DIR}/index.html'
    " && exec /bin/busybox httpd -f -p ${NOMAD_IP_web}:${NOMAD_PORT_web} -h ${NOMAD_TASK_DIR}"
)
RAW_EXEC_TASK = f"""driver = "raw_exec"

      config {{
        command = "/bin/sh"
        args = ["-c", {json.dumps(HTTPD)}]
      }}
"""

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        not FIXTURES.is_dir() or shutil.which("ip") is None or shutil.which("dig") is None,
        reason="needs the seed fixtures, iproute2 and dig",
    ),
    pytest.mark.timeout(300),
]


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def catalog_server_config(dc: str, node: str, ip: str, data_dir: Path) -> str:
    """consul-server.json with this machine's datacenter, name and addresses."""
    config = json.loads(_fixture("consul-server.json"))
    assert config["datacenter"] == "ams2" and config["data_dir"] == "/tmp/consul"
    text = _fixture("consul-server.json")
    text = text.replace('"ams2-server-01"', json.dumps(node)).replace('"ams2"', json.dumps(dc))
    text = text.replace('"/tmp/consul"', json.dumps(str(data_dir)))
    return text.replace("[private_ip_address]", ip).replace("[public_ip_address]", ip)


def scheduler_server_config(dc: str, ip: str, data_dir: Path, consul_address: str = "") -> str:
    """nomad-server.hcl with this machine's datacenter and address; ``consul_address`` is
    the line the document adds for the server without a catalog server of its own."""
    text = _fixture("nomad-server.hcl")
    text = text.replace('datacenter = "ams2"', f'datacenter = "{dc}"')
    text = text.replace('data_dir = "/tmp/nomad"', f'data_dir = "{data_dir}"')
    text = text.replace("[public_ip_address]", ip)
    if consul_address:
        text = text.replace("consul {\n", f'consul {{\n  address = "{consul_address}"\n', 1)
    return text


def scheduler_client_config(dc: str, data_dir: Path, catalog_ip: str) -> str:
    text = _fixture("nomad-client.hcl")
    text = text.replace('datacenter = "ams2"', f'datacenter = "{dc}"')
    text = text.replace('data_dir = "/tmp/nomad"', f'data_dir = "{data_dir}"')
    text = text.replace("[private_ip_address_other_node]", catalog_ip)
    return text + RAW_EXEC_PLUGIN


def raw_exec_job() -> str:
    """The document's nginx job with only its task's driver and config changed."""
    text = _fixture("nginx.nomad")
    task = re.compile(r'driver = "docker"\n\s*config \{\n.*?port_map \{.*?\}\n\s*\}\n', re.S)
    changed, n = task.subn(RAW_EXEC_TASK, text)
    assert n == 1, "the fixture's docker task changed shape"
    return changed


@dataclass
class Seed:
    """The five machines, and which agents have been started on them (each once)."""

    net: Network
    workdir: Path
    started: set[str] = field(default_factory=set)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    crashed: set[str] = field(default_factory=set)
    """Machines taken down on purpose: their agents' exits are expected."""

    def ip(self, machine: str) -> str:
        return self.net[machine].ip

    def env(self) -> dict[str, str]:
        """The CLI's environment on a machine: no addresses, so its defaults (the local
        agent) apply, as on the document's machines."""
        scrub = ("STEPPE_ADDR", "NOMAD_ADDR", "CONSUL_HTTP_ADDR", "STEPPE_HTTP_ADDR")
        env = {k: v for k, v in os.environ.items() if k not in scrub}
        return {**env, "PYTHONUNBUFFERED": "1"}

    def steppe(self, machine: str, *args: str, check: bool = True) -> str:
        result = self.net.run(
            machine, [sys.executable, "-m", "steppe", *args], env=self.env(), cwd=self.workdir
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{machine}$ steppe {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def curl(self, machine: str, *args: str) -> tuple[int, str]:
        """``curl`` on ``machine``: (HTTP status, body)."""
        result = self.net.run(
            machine, ["curl", "-s", "-m", "10", "-w", "\n%{http_code}", *args], timeout=20
        )
        body, _, status = result.stdout.rpartition("\n")
        return int(status or 0), body

    def curl_json(self, machine: str, url: str) -> Any:
        status, body = self.curl(machine, url)
        assert status == 200, f"{machine}$ curl {url}: {status} {body}"
        return json.loads(body)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def agent(self, machine: str, role: str, config: str, suffix: str) -> None:
        name = f"{machine}.{role}"
        if name in self.started:
            return
        path = self.workdir / machine / f"{role}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config)
        args = [sys.executable, "-m", "steppe", "agent", "-config", str(path)]
        log_path = self.workdir / f"{name}.log"
        self.procs[name] = self.net.popen(
            machine, args, log_path=log_path, env=self.env(), cwd=self.workdir
        )
        self.started.add(name)

    def check_alive(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None and name.split(".")[0] not in self.crashed:
                raise AssertionError(f"{name} exited {proc.returncode}:\n{self.log(name)[-3000:]}")
        return True

    # the document's sections -------------------------------------------------------------
    def catalog_servers(self) -> None:
        for dc, machine in CATALOG_OF.items():
            data = self.workdir / machine / "consul"
            config = catalog_server_config(dc, machine, self.ip(machine), data)
            self.agent(machine, "consul", config, ".json")
        for machine in CATALOG_OF.values():
            url = "http://localhost:8500/v1/status/leader"
            wait_until(
                lambda m=machine, u=url: self.check_alive() and self.curl(m, u)[0] == 200,
                timeout=60,
                what=f"catalog server on {machine}",
            )

    def wan_joined(self) -> None:
        self.catalog_servers()
        if "wan" not in self.started:
            out = self.steppe(AMS_SERVER, "join", "-wan", self.ip(LON_SERVER))
            assert "Successfully joined" in out
            self.started.add("wan")

    def scheduler_servers(self) -> None:
        self.wan_joined()  # lon1's server finds ams2's only through the federation
        for machine in (AMS_SERVER, LON_SERVER, AMS_SERVER_2):
            dc = machine[:4]
            data = self.workdir / machine / "nomad"
            consul = f"{self.ip(AMS_SERVER)}:8500" if machine == AMS_SERVER_2 else ""
            config = scheduler_server_config(dc, self.ip(machine), data, consul)
            self.agent(machine, "nomad", config, ".hcl")

        def formed() -> bool:
            self.check_alive()
            status, body = self.curl(AMS_SERVER_2, "http://localhost:4646/v1/status/leader")
            return status == 200 and bool(json.loads(body))

        wait_until(formed, timeout=90, what="the scheduler servers' cluster")

    def scheduler_clients(self) -> None:
        self.scheduler_servers()
        for machine in (AMS_CLIENT, LON_CLIENT):
            dc = machine[:4]
            config = scheduler_client_config(
                dc, self.workdir / machine / "nomad", self.ip(CATALOG_OF[dc])
            )
            self.agent(machine, "nomad", config, ".hcl")

        def ready() -> bool:
            self.check_alive()
            nodes = self.curl_json(AMS_SERVER, "http://localhost:4646/v1/nodes")
            return len([n for n in nodes if n["Status"] == "ready"]) == 2

        wait_until(ready, timeout=60, what="both clients ready")

    def nginx_running(self) -> list[dict[str, Any]]:
        self.scheduler_clients()
        if "nginx" not in self.started:
            job = self.workdir / "nginx.nomad"
            job.write_text(raw_exec_job())
            self.steppe(LON_CLIENT, "run", str(job))  # "register jobs everywhere"
            self.started.add("nginx")
        return wait_until(lambda: self.running_allocs(4), timeout=60, what="4 nginx running")

    def running_allocs(self, count: int) -> list[dict[str, Any]] | None:
        self.check_alive()
        allocs = self.curl_json(AMS_SERVER, "http://localhost:4646/v1/job/nginx/allocations")
        running = [a for a in allocs if a["ClientStatus"] == "running"]
        return running if len(running) == count else None


@pytest.fixture(scope="module")
def seed() -> Iterator[Seed]:
    """The machines for the whole module (each step starts only what it needs, once);
    ``STEPPE_SEED_LOGS=1`` prints every agent's log at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="steppe-seed-"))
    try:
        with network(MACHINES) as net:
            s = Seed(net, workdir)
            try:
                yield s
            finally:
                if os.environ.get("STEPPE_SEED_LOGS"):
                    for name in sorted(s.procs):
                        print(f"==== {name}\n{s.log(name)[-4000:]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_step1_catalog_servers_join_over_the_wan(seed: Seed) -> None:
    seed.wan_joined()
    for machine in (AMS_SERVER, LON_SERVER):
        dcs = seed.curl_json(machine, "http://localhost:8500/v1/catalog/datacenters")
        assert sorted(dcs) == ["ams2", "lon1"]


def test_step2_kv_is_namespaced_per_datacenter(seed: Seed) -> None:
    seed.wan_joined()
    status, _ = seed.curl(AMS_SERVER, "-X", "PUT", "-d", "myvalue", "localhost:8500/v1/kv/mykey")
    assert status == 200
    entries = seed.curl_json(AMS_SERVER, "localhost:8500/v1/kv/mykey")
    assert entries[0]["Key"] == "mykey"

    status, body = seed.curl(LON_SERVER, "localhost:8500/v1/kv/mykey")
    assert status == 404 and body == ""  # "nothing is returned"
    entries = seed.curl_json(LON_SERVER, "localhost:8500/v1/kv/mykey?dc=ams2")
    assert [e["Key"] for e in entries] == ["mykey"]

    for machine in (AMS_SERVER, LON_SERVER):
        members = _table(seed.steppe(machine, "members", "-wan"))
        assert sorted(
            (m["Node"], m["Address"].rpartition(":")[0], m["Status"], m["Type"], m["DC"])
            for m in members
        ) == [
            (f"{AMS_SERVER}.ams2", seed.ip(AMS_SERVER), "alive", "server", "ams2"),
            (f"{LON_SERVER}.lon1", seed.ip(LON_SERVER), "alive", "server", "lon1"),
        ]


def test_step3_scheduler_servers_find_each_other_through_the_catalog(seed: Seed) -> None:
    seed.scheduler_servers()
    names = sorted(f"{m}.eu" for m in (AMS_SERVER, AMS_SERVER_2, LON_SERVER))

    def three_with_a_leader(machine: str) -> list[dict[str, str]] | None:
        rows = _table(seed.steppe(machine, "server-members"))
        leaders = [r for r in rows if r["Leader"] == "true"]
        return rows if len(rows) == 3 and len(leaders) == 1 else None

    rows = wait_until(lambda: three_with_a_leader(AMS_SERVER), timeout=30, what="3 servers")
    assert sorted(r["Name"] for r in rows) == names
    assert sorted(r["Datacenter"] for r in rows) == ["ams2", "ams2", "lon1"]
    assert {r["Region"] for r in rows} == {"eu"}
    assert {r["Status"] for r in rows} == {"alive"}
    for machine in (LON_SERVER, AMS_SERVER_2):  # every server sees the same cluster
        seen = wait_until(lambda m=machine: three_with_a_leader(m), timeout=30, what=machine)
        assert sorted(r["Name"] for r in seen) == names
        assert [r["Name"] for r in seen if r["Leader"] == "true"] == [
            r["Name"] for r in rows if r["Leader"] == "true"
        ]


def _table(out: str) -> list[dict[str, str]]:
    """A CLI table (header line, then rows) as dicts by column name."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0])
    return [dict(zip(header, re.split(r"\s{2,}", line), strict=False)) for line in lines[1:]]


def _section(out: str, title: str) -> str:
    """The lines of ``steppe status``'s section ``title``, up to the next blank line."""
    after = out.split(f"\n{title}\n", 1)[1]
    return after.split("\n\n", 1)[0]


def test_step4_both_clients_in_two_datacenters(seed: Seed) -> None:
    seed.scheduler_clients()
    for machine in (AMS_CLIENT, LON_SERVER):  # "on one of the nodes": a client forwards
        nodes = _table(seed.steppe(machine, "node-status"))
        assert sorted((n["Name"], n["DC"], n["Status"]) for n in nodes) == [
            (AMS_CLIENT, "ams2", "ready"),
            (LON_CLIENT, "lon1", "ready"),
        ]


def _node_dcs(seed: Seed) -> dict[str, str]:
    return {n["ID"]: n["DC"] for n in _table(seed.steppe(AMS_SERVER, "node", "status"))}


def _catalog_nginx(seed: Seed, dc: str) -> list[tuple[str, int]]:
    entries = seed.curl_json(CATALOG_OF[dc], "http://localhost:8500/v1/health/service/nginx")
    return sorted(
        (e["Service"]["Address"], e["Service"]["Port"])
        for e in entries
        if all(c["Status"] == "passing" for c in e["Checks"])
    )


def test_step5_the_nginx_job_runs_two_per_datacenter(seed: Seed) -> None:
    seed.nginx_running()
    out = seed.steppe(AMS_SERVER, "status", "nginx")
    summary = _table(_section(out, "Summary"))
    assert [(g["Task Group"], g["Running"]) for g in summary] == [("webserver", "4")], out
    dcs = _node_dcs(seed)
    allocs = [a for a in _table(_section(out, "Allocations")) if a["Status"] == "running"]
    assert sorted(dcs[a["Node ID"]] for a in allocs) == ["ams2", "ams2", "lon1", "lon1"], out

    client_of = {"ams2": AMS_CLIENT, "lon1": LON_CLIENT}
    for dc, other in (("ams2", LON_SERVER), ("lon1", AMS_SERVER)):
        instances = wait_until(
            lambda d=dc: len(found := _catalog_nginx(seed, d)) == 2 and found,
            timeout=30,
            what=f"2 passing nginx instances in {dc}'s catalog",
        )
        assert {host for host, _ in instances} == {seed.ip(client_of[dc])}
        for host, port in instances:  # each answers HTTP from the other datacenter
            status, body = seed.curl(other, f"http://{host}:{port}/")
            assert status == 200 and body.startswith("nginx nginx.webserver[") and dc in body

    ams2_instances = _catalog_nginx(seed, "ams2")
    answer = seed.net.run(
        LON_CLIENT,
        [
            "dig",
            f"@{seed.ip(AMS_SERVER)}",
            "-p",
            "8600",
            "nginx.service.consul",
            "SRV",
            "+noall",
            "+answer",
            "+additional",
        ],
    ).stdout
    ports = sorted(int(r.split()[6]) for r in answer.splitlines() if "\tSRV\t" in r)
    addresses = {r.split()[4] for r in answer.splitlines() if "\tA\t" in r}
    assert ports == sorted(port for _, port in ams2_instances), answer
    assert addresses == {seed.ip(AMS_CLIENT)}, answer


def test_step6_a_destroyed_client_fails_over_to_the_other_datacenter(seed: Seed) -> None:
    seed.nginx_running()
    dcs = _node_dcs(seed)
    ams2_node = next(node for node, dc in dcs.items() if dc == "ams2")
    seed.crashed.add(LON_CLIENT)
    seed.net.crash(LON_CLIENT)  # the machine is gone: link down, every process killed

    def lon1_down() -> bool:
        nodes = _table(seed.steppe(AMS_SERVER, "node", "status"))
        return any(n["Name"] == LON_CLIENT and n["Status"] == "down" for n in nodes)

    wait_until(lon1_down, timeout=60, what="lon1-client marked down")

    def all_on_ams2() -> str | None:
        out = seed.steppe(AMS_SERVER, "status", "nginx")
        allocs = _table(_section(out, "Allocations"))
        running = [a["Node ID"] for a in allocs if a["Status"] == "running"]
        lost = [a for a in allocs if a["Status"] == "lost"]
        return out if running == [ams2_node] * 4 and len(lost) == 2 else None

    out = wait_until(all_on_ams2, timeout=60, what="4 nginx running, all on ams2-client")
    assert [
        (g["Task Group"], g["Running"], g["Lost"]) for g in _table(_section(out, "Summary"))
    ] == [("webserver", "4", "2")], out
    instances = wait_until(
        lambda: len(found := _catalog_nginx(seed, "ams2")) == 4 and found,
        timeout=30,
        what="4 passing nginx instances in ams2's catalog",
    )
    for host, port in instances:
        status, _ = seed.curl(LON_SERVER, f"http://{host}:{port}/")
        assert status == 200
