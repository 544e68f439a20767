"""One etcd process that a Steppe server starts, watches over and stops.

The process is managed with plain ``subprocess.Popen`` rather than asyncio's subprocess
support, so it is not tied to one event loop: test fixtures and agents alike can start it
in one loop and stop it from another (or from no loop at all, while cleaning up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from steppe.errors import BackendError, ValidationError

ETCD_BINARY = "/usr/bin/etcd"
_SETPRIV = "/usr/bin/setpriv"

log = logging.getLogger(__name__)


def _with_parent_death_signal(command: list[str]) -> list[str]:
    """If the agent is killed, its etcd member goes with it, as it would if the machine
    died. ``setpriv`` sets that up in the child without a ``preexec_fn``, which would force
    a plain fork() of a process full of gRPC threads."""
    if Path(_SETPRIV).exists():
        return [_SETPRIV, "--pdeathsig", "KILL", *command]
    return command


def _check_url(what: str, url: str) -> str:
    if not url.startswith("http://") or url.count(":") != 2:
        raise ValidationError(f"etcd member {what} {url!r}: expected http://host:port")
    return url


class EtcdMember:
    """An etcd member process: data in ``base_dir/etcd``, log in ``base_dir/etcd.log``.

    Defaults are tuned for a LAN or loopback: a 50 ms heartbeat and a 500 ms election
    timeout put leader failover well under a second and a half, where etcd's own
    defaults (100 ms / 1 s) take two. Auto-compaction keeps the last
    ``compaction_retention`` revisions, enough for any watcher that fell briefly behind.
    """

    def __init__(
        self,
        name: str,
        base_dir: str | os.PathLike[str],
        *,
        client_url: str,
        peer_url: str,
        initial_cluster: Mapping[str, str] | None = None,
        cluster_state: Literal["new", "existing"] = "new",
        cluster_token: str = "steppe",
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        compaction_retention: int = 10_000,
        quota_bytes: int = 4 * 1024**3,
        max_txn_ops: int = 128,
        max_request_bytes: int = 1_572_864,
        binary: str = ETCD_BINARY,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not name or any(c in name for c in ",= "):
            raise ValidationError(f"etcd member name {name!r}: must be non-empty, no ',= '")
        if election_ms < 5 * heartbeat_ms:
            raise ValidationError(
                f"etcd member {name}: election timeout {election_ms}ms must be at least "
                f"5x the heartbeat ({heartbeat_ms}ms)"
            )
        self.name = name
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "etcd"
        self.log_path = self.base_dir / "etcd.log"
        self.client_url = _check_url("client URL", client_url)
        self.peer_url = _check_url("peer URL", peer_url)
        self.initial_cluster = dict(initial_cluster or {name: peer_url})
        self.cluster_state = cluster_state
        self.cluster_token = cluster_token
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.compaction_retention = compaction_retention
        self.quota_bytes = quota_bytes
        self.max_txn_ops = max_txn_ops
        self.max_request_bytes = max_request_bytes
        self.binary = binary
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self.restarts = 0

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client URL, as EtcdBackend takes it."""
        return self.client_url.removeprefix("http://")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def has_data(self) -> bool:
        return (self.data_dir / "member").is_dir()

    def command(self) -> list[str]:
        cluster = ",".join(f"{n}={u}" for n, u in self.initial_cluster.items())
        return [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={cluster}",
            f"--initial-cluster-state={self.cluster_state}",
            f"--initial-cluster-token={self.cluster_token}",
            f"--heartbeat-interval={self.heartbeat_ms}",
            f"--election-timeout={self.election_ms}",
            "--pre-vote=true",
            "--auto-compaction-mode=revision",
            f"--auto-compaction-retention={self.compaction_retention}",
            f"--quota-backend-bytes={self.quota_bytes}",
            f"--max-txn-ops={self.max_txn_ops}",
            f"--max-request-bytes={self.max_request_bytes}",
            "--enable-v2=false",
            "--logger=zap",
            *self.extra_args,
        ]

    def spawn(self) -> int:
        """Starts the process without waiting for it to serve; returns its PID."""
        if self.running:
            raise BackendError(f"etcd member {self.name} is already running (pid {self.pid})")
        if not Path(self.binary).exists():
            raise BackendError(f"etcd binary {self.binary} not found (apt install etcd-server)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._stopping = False
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                _with_parent_death_signal(self.command()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self._proc.pid

    async def start(self, timeout: float = 30.0) -> None:
        """Starts the member and returns once it serves with a leader. A member of a new
        multi-member cluster only gets there once a quorum of its peers runs too: spawn
        them all, then wait."""
        self.spawn()
        await self.wait_healthy(timeout)

    def is_healthy(self, timeout: float = 1.0) -> bool:
        """etcd's ``/health`` is true only when the member has a leader and no alarm."""
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=timeout) as resp:
                return bool(json.load(resp).get("health") == "true")
        except (OSError, ValueError):
            return False

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise BackendError(
                    f"etcd member {self.name} exited with {self._proc.returncode}: "
                    f"{self.log_tail()}"
                )
            if await asyncio.to_thread(self.is_healthy):
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"etcd member {self.name} not healthy after {timeout:g}s: {self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return " | ".join(text)

    def kill(self) -> None:
        """SIGKILL, as a machine dying would; waits for the PID to be reaped. A supervisor
        (:meth:`supervise`) treats this as a crash and starts the member again."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def terminate(self) -> None:
        """Sends SIGTERM without waiting, so several members can shut down in parallel."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def stop_now(self, timeout: float = 10.0) -> None:
        """Blocking stop for cleanup paths that have no event loop."""
        proc = self._proc
        self._stopping = True
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: etcd flushes and leaves cleanly on TERM."""
        proc = self._proc
        self._stopping = True
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                break
            await asyncio.sleep(0.02)

    async def restart(self, timeout: float = 30.0) -> None:
        """Stops the member and starts it again on its existing data."""
        await self.stop()
        self.cluster_state = "existing"
        await self.start(timeout)

    async def supervise(self, *, backoff: float = 1.0, poll: float = 0.1) -> None:
        """Starts the member again on its data whenever it exits without being asked to
        (a deliberate :meth:`stop` is left alone until the next start). Runs until
        cancelled; backs off when the member keeps crashing."""
        delay = backoff
        while True:
            proc = self._proc
            if proc is None or proc.poll() is None or self._stopping:
                if proc is not None and proc.poll() is None:
                    delay = backoff
                await asyncio.sleep(poll)
                continue
            log.warning(
                "etcd member %s exited with %s; restarting: %s",
                self.name,
                proc.returncode,
                self.log_tail(2),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            if self._proc is proc and not self._stopping:
                self.cluster_state = "existing" if self.has_data else self.cluster_state
                self.spawn()
                self.restarts += 1
