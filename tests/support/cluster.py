"""A real multi-process cluster on loopback: N servers (scheduler and catalog roles, each
supervising two etcd members) and M client-only agents, every agent on its own
127.A.B.x address with the default ports, as they would run on separate machines.

Servers are 127.A.B.11, .12, ...; clients 127.A.B.21, .22, ...; A.B is picked at random
per cluster so that clusters of concurrent test runs never share an address.

Cleanup is by PID, even on failure: the agents this module started, then every process
whose command line or working directory lies under the cluster's own temp dir (the
agents' etcd members and the task supervisors and tasks they left running).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
STEPPE = [sys.executable, "-m", "steppe"]
HTTP, RPC, CATALOG = 4646, 4647, 8500


class HTTPFailure(Exception):
    """A request that got an HTTP error status (the server answered)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


def request(
    url: str, method: str = "GET", body: bytes | None = None, timeout: float = 10.0
) -> bytes:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data: bytes = r.read()
            return data
    except urllib.error.HTTPError as exc:
        raise HTTPFailure(exc.code, exc.read().decode(errors="replace")) from exc


def get_json(url: str, timeout: float = 10.0) -> Any:
    return json.loads(request(url, timeout=timeout) or b"null")


@dataclass
class ClusterAgent:
    name: str
    ip: str
    kind: str
    """``server`` or ``client``."""
    data_dir: Path
    configs: list[Path]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def http(self) -> str:
        return f"http://{self.ip}:{HTTP}"

    @property
    def catalog(self) -> str:
        return f"http://{self.ip}:{CATALOG}"

    @property
    def rpc_addr(self) -> str:
        return f"{self.ip}:{RPC}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "STEPPE_ADDR": self.http, "PYTHONUNBUFFERED": "1"}

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        args = [*STEPPE, "agent"]
        for path in self.configs:
            args += ["-config", str(path)]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
            )

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Sends ``sig`` and reaps the process (SIGKILL after ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def get(self, path: str, timeout: float = 10.0) -> Any:
        return get_json(self.http + path, timeout)

    def cli(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*STEPPE, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
            cwd=REPO,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"steppe {' '.join(args)} via {self.name} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Cluster:
    workdir: Path
    servers: list[ClusterAgent]
    clients: list[ClusterAgent]
    bootstrap_expect: int
    started_pids: set[int] = field(default_factory=set)

    @property
    def agents(self) -> list[ClusterAgent]:
        return [*self.servers, *self.clients]

    def start(self, agents: list[ClusterAgent] | None = None) -> None:
        for agent in agents if agents is not None else self.agents:
            agent.start()
            self.started_pids.add(agent.pid)

    def alive_servers(self) -> list[ClusterAgent]:
        return [s for s in self.servers if s.alive]

    def server_at(self, addr: str) -> ClusterAgent:
        host = addr.rpartition(":")[0]
        return next(s for s in self.servers if s.ip == host)

    def leader(self, among: list[ClusterAgent] | None = None) -> ClusterAgent | None:
        """The scheduler leader if every asked live server agrees on one, else None."""
        answers = set()
        for server in among if among is not None else self.alive_servers():
            try:
                answers.add(server.get("/v1/status/leader", timeout=3))
            except (OSError, ValueError, HTTPFailure):
                return None
        if len(answers) != 1 or not next(iter(answers)):
            return None
        leader = self.server_at(str(next(iter(answers))))
        return leader if leader.alive else None

    def wait_leader(self, timeout: float = 30.0) -> ClusterAgent:
        """Fails at once if an agent exited with an error on the way."""
        found = wait_until(
            lambda: self._exited() or self.leader(), timeout=timeout, what="one scheduler leader"
        )
        self._fail_if_exited()
        assert isinstance(found, ClusterAgent)
        return found

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Every live agent up: one leader, every live client's node ready, and every
        live server's catalog answering a consistent KV read."""
        self._fail_if_exited()
        self.wait_leader(timeout)
        server = self.alive_servers()[0]
        want = {c.name for c in self.clients if c.alive}

        def nodes_ready() -> bool:
            if self._exited():
                return True
            nodes = server.get("/v1/nodes", timeout=3)
            ready = {n["Name"] for n in nodes if n["Status"] == "ready"}
            return want <= ready

        wait_until(nodes_ready, timeout=timeout, what=f"nodes {sorted(want)} ready")
        self._fail_if_exited()
        for s in self.alive_servers():
            wait_until(
                lambda s=s: request(f"{s.catalog}/v1/kv/_ready?consistent", "PUT", b"1", 3),
                timeout=timeout,
                what=f"{s.name}'s catalog KV",
            )

    def _exited(self) -> list[ClusterAgent]:
        """Agents that exited on their own (not by a signal the test sent)."""
        return [
            agent
            for agent in self.agents
            if agent.proc is not None
            and agent.proc.poll() not in (None, -signal.SIGKILL, -signal.SIGTERM, 0)
        ]

    def _fail_if_exited(self) -> None:
        for agent in self._exited():
            assert agent.proc is not None
            code = agent.proc.returncode
            raise AssertionError(f"{agent.name} exited {code}:\n{agent.log()[-4000:]}")

    def add_server(self, extra_hcl: str = "") -> ClusterAgent:
        """One more server, configured to join the formed cluster (it expects as many
        servers as formed it); not started."""
        i = len(self.servers) + 1
        base = self.servers[0].ip.rpartition(".")[0]
        data = self.workdir / f"s{i}"
        configs = _server_configs(base, i, self.bootstrap_expect, data, self.workdir, extra_hcl)
        server = ClusterAgent(f"s{i}", f"{base}.1{i}", "server", data, configs,
                              self.workdir / f"s{i}.log")  # fmt: skip
        self.servers.append(server)
        return server

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for agent in self.agents:
            if agent.alive:
                assert agent.proc is not None
                agent.proc.send_signal(sig)
        for agent in self.agents:
            agent.kill(signal.SIGKILL, timeout=30)

    def cleanup(self) -> None:
        """Every agent this cluster started, then every process living under its temp dir."""
        for agent in self.agents:
            agent.kill(signal.SIGKILL, timeout=5)
        kill_processes_under(self.workdir)

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"----- {a.name} -----\n{a.log()[-tail:]}" for a in self.agents if a.log_path.exists()
        )


def processes_under(root: Path) -> list[int]:
    """PIDs whose command line mentions ``root`` or whose working directory is under it."""
    marker = str(root)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd == marker or cwd.startswith(marker + "/"):
            found.append(int(entry.name))
    return found


def kill_processes_under(root: Path) -> None:
    for _ in range(5):
        pids = processes_under(root)
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with suppress(AssertionError):
            wait_until(lambda p=pids: not any(_exists(x) for x in p), timeout=5)


def _exists(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _hcl_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _server_configs(
    base: str,
    i: int,
    n_servers: int,
    data_dir: Path,
    workdir: Path,
    extra_hcl: str = "",
    retry_join: bool = True,
) -> list[Path]:
    """Server ``i`` expecting ``n_servers`` to form, and joining servers 1 to ``i`` or
    ``n_servers``, whichever is more (``retry_join=False``: none, until told to)."""
    ip = f"{base}.1{i}"
    known = range(1, max(i, n_servers) + 1) if retry_join else range(0)
    nomad_joins = [f"{base}.1{k}:{HTTP}" for k in known]
    catalog_joins = [f"{base}.1{k}:{CATALOG}" for k in known]
    hcl = workdir / f"s{i}.hcl"
    hcl.write_text(
        f'data_dir = "{data_dir}"\nbind_addr = "{ip}"\nname = "s{i}"\n'
        f'region = "eu"\ndatacenter = "ams2"\nlog_level = "INFO"\n{extra_hcl}'
        f"server {{\n  enabled = true\n  bootstrap_expect = {n_servers}\n"
        f"  server_join {{\n    retry_join = {_hcl_list(nomad_joins)}\n  }}\n}}\n"
        f'consul {{\n  address = "{ip}:{CATALOG}"\n  server_auto_join = false\n'
        "  client_auto_join = false\n  auto_advertise = false\n}\n"
    )
    catalog = workdir / f"s{i}-catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "server": True,
                "bootstrap_expect": n_servers,
                "retry_join": catalog_joins,
                "client_addr": ip,
            }
        )
    )
    return [hcl, catalog]


def _client_config(base: str, j: int, n_servers: int, data_dir: Path, workdir: Path) -> Path:
    ip = f"{base}.2{j}"
    servers = [f"{base}.1{k}:{RPC}" for k in range(1, n_servers + 1)]
    dc = "ams2" if j % 2 else "lon1"
    hcl = workdir / f"c{j}.hcl"
    hcl.write_text(
        f'data_dir = "{data_dir}"\nbind_addr = "{ip}"\nname = "c{j}"\n'
        f'region = "eu"\ndatacenter = "{dc}"\nlog_level = "INFO"\n'
        f"client {{\n  enabled = true\n  servers = {_hcl_list(servers)}\n"
        "  cpu_total_compute = 4000\n  memory_total_mb = 4096\n}\n"
        f'consul {{\n  address = "{base}.11:{CATALOG}"\n  server_auto_join = false\n'
        "  client_auto_join = false\n  auto_advertise = false\n}\n"
        'plugin "raw_exec" {\n  config {\n    enabled = true\n  }\n}\n'
    )
    return hcl


def new_cluster(
    workdir: Path, servers: int = 3, clients: int = 2, *, retry_join: bool = True
) -> Cluster:
    """Writes every agent's config under ``workdir``; nothing runs yet."""
    base = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
    srv = []
    for i in range(1, servers + 1):
        data = workdir / f"s{i}"
        configs = _server_configs(base, i, servers, data, workdir, retry_join=retry_join)
        srv.append(ClusterAgent(f"s{i}", f"{base}.1{i}", "server", data, configs,
                                workdir / f"s{i}.log"))  # fmt: skip
    cli = []
    for j in range(1, clients + 1):
        data = workdir / f"c{j}"
        config = _client_config(base, j, servers, data, workdir)
        cli.append(ClusterAgent(f"c{j}", f"{base}.2{j}", "client", data, [config],
                                workdir / f"c{j}.log"))  # fmt: skip
    return Cluster(workdir, srv, cli, bootstrap_expect=servers)


@contextmanager
def running_cluster(
    servers: int = 3, clients: int = 2, *, keep_logs_on_failure: bool = True
) -> Iterator[Cluster]:
    """Starts the cluster and waits until it is ready; on the way out stops and removes
    everything it started. On failure the agents' log tails are printed."""
    workdir = Path(tempfile.mkdtemp(prefix="steppe-cluster-"))
    cluster = new_cluster(workdir, servers, clients)
    failed = True
    try:
        cluster.start()
        cluster.wait_ready()
        yield cluster
        failed = False
    finally:
        if failed and keep_logs_on_failure:
            print(cluster.logs(), file=sys.stderr)
        cluster.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
