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
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
def dev_agent(*extra: str) -> Iterator[AgentProcess]:
    """``steppe agent -dev`` on free ports; stopped (SIGTERM, then SIGKILL) by its PID."""
    http, catalog, dns = free_port(), free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="steppe-e2e-"))
    log_path = workdir / "agent.log"
    env = {
        **os.environ,
        "STEPPE_ADDR": f"127.0.0.1:{http}",
        "CONSUL_HTTP_ADDR": f"127.0.0.1:{catalog}",
        "PYTHONUNBUFFERED": "1",
    }
    args = [*STEPPE, "agent", "-dev", "-http-port", str(http)]
    args += ["-consul-http-port", str(catalog), "-dns-port", str(dns), *extra]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    agent = AgentProcess(proc, http, catalog, dns, log_path, env)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"agent exited early:\n{agent.log()}")
            nodes = agent.get("/v1/nodes")
            return bool(nodes) and nodes[0]["Status"] == "ready"

        wait_until(ready, timeout=30, what="dev agent ready")
        yield agent
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
