"""Real agents as separate processes, driven only through the CLI and HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
STEPPE = [sys.executable, "-m", "steppe"]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each socket stays bound until all are picked, since the
    kernel may hand a just-released port out again."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    catalog_port: int
    dns_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def catalog(self) -> str:
        return f"http://127.0.0.1:{self.catalog_port}"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*STEPPE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise AssertionError(
                f"steppe {command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def get(self, path: str, base: str | None = None) -> Any:
        with urllib.request.urlopen((base or self.address) + path, timeout=30) as r:
            return json.loads(r.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def dev_agent(*extra: str, env: dict[str, str] | None = None) -> Iterator[AgentProcess]:
    """``steppe agent -dev`` on free ports; stopped (SIGTERM, then SIGKILL) by its PID.

    ``env`` adds to the agent's (and its CLI calls') environment, e.g. ``DOCKER_HOST``."""
    http, catalog, dns = free_ports(3)
    workdir = Path(tempfile.mkdtemp(prefix="steppe-e2e-"))
    args = [*STEPPE, "agent", "-dev", "-http-port", str(http)]
    args += ["-consul-http-port", str(catalog), "-dns-port", str(dns), *extra]
    with _running(args, http, catalog, dns, workdir / "agent.log", env) as agent:
        yield agent


@dataclass
class AgentConfigFile:
    """A persistent single-node agent (server and client, etcd under ``data_dir``) that can
    be stopped and started again on the same data, as an operator restarts one."""

    path: Path
    data_dir: Path
    http_port: int
    catalog_port: int
    dns_port: int


def single_node_config(
    workdir: Path, *, region: str = "global", datacenter: str = "dc1", name: str = "solo"
) -> AgentConfigFile:
    http, rpc, etcd_client, etcd_peer, catalog, dns = free_ports(6)
    data_dir = workdir / "data"
    path = workdir / "agent.hcl"
    path.write_text(
        f'data_dir = "{data_dir}"\n'
        'bind_addr = "127.0.0.1"\n'
        f'name = "{name}"\n'
        f'region = "{region}"\n'
        f'datacenter = "{datacenter}"\n'
        f"ports {{\n  http = {http}\n  rpc = {rpc}\n"
        f"  etcd_client = {etcd_client}\n  etcd_peer = {etcd_peer}\n}}\n"
        "server {\n  enabled = true\n  bootstrap_expect = 1\n}\n"
        "client {\n  enabled = true\n}\n"
        # never the machine's own catalog on 8500: an address of our own, with no catalog
        # behind it unless a test starts one (registrations then only log warnings)
        f'consul {{\n  address = "127.0.0.1:{catalog}"\n'
        "  server_auto_join = false\n  client_auto_join = false\n  auto_advertise = false\n}\n"
    )
    return AgentConfigFile(path, data_dir, http, catalog, dns)


@contextmanager
def config_agent(
    config: AgentConfigFile, *, env: dict[str, str] | None = None, log_name: str = "agent.log"
) -> Iterator[AgentProcess]:
    """``steppe agent -config FILE``; stopped by its PID with SIGTERM, which (outside -dev)
    leaves its tasks running for the next agent on the same ``data_dir`` to re-attach."""
    args = [*STEPPE, "agent", "-config", str(config.path)]
    args += ["-consul-http-port", str(config.catalog_port), "-dns-port", str(config.dns_port)]
    log_path = config.path.parent / log_name
    ports = (config.http_port, config.catalog_port, config.dns_port)
    with _running(args, *ports, log_path, env, ready_timeout=60) as agent:
        yield agent


@contextmanager
def _running(
    args: list[str],
    http: int,
    catalog: int,
    dns: int,
    log_path: Path,
    extra_env: dict[str, str] | None,
    ready_timeout: float = 30,
) -> Iterator[AgentProcess]:
    env = {
        **os.environ,
        **(extra_env or {}),
        "STEPPE_ADDR": f"127.0.0.1:{http}",
        "CONSUL_HTTP_ADDR": f"127.0.0.1:{catalog}",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    agent = AgentProcess(proc, http, catalog, dns, log_path, env)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                return True
            nodes = agent.get("/v1/nodes")
            return bool(nodes) and all(n["Status"] == "ready" for n in nodes)

        wait_until(ready, timeout=ready_timeout, what="agent ready")
        if proc.poll() is not None:
            raise AssertionError(f"agent exited early ({proc.returncode}):\n{agent.log()}")
        yield agent
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
