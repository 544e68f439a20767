"""Machines for tests: network namespaces on one Linux bridge, each with its own address in
a private /24, its own loopback and its own hostname (a UTS namespace per process tree,
since Nomad names a node after its host).

Everything is named ``stp<run>-...`` where ``<run>`` is random per network, so a run
never collides with another (or with the remains of a killed one). A network records its
owner's PID under ``RUNS_DIR``; a new network first removes the namespaces, links and
processes of runs whose owner is gone.

Cleanup is by PID, even on failure: the processes started here, then every process still
inside one of our namespaces (task processes the agents left behind), then the
namespaces, the veths and the bridge.

Partitions: the kernel here has no netem, so a host is cut off by taking its link down
(``link_down``), or one path is cut by a blackhole route (``blackhole``) or an iptables
DROP rule inside the namespace (``drop``); ``crash`` is a dead machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "stp"
RUNS_DIR = Path("/tmp/steppe-netns-runs")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(ns: str) -> list[int]:
    result = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []


def _kill_netns_processes(ns: str, deadline: float = 10.0) -> None:
    """SIGKILL every process inside ``ns``: all of them were started by this module."""
    end = time.monotonic() + deadline
    while pids := _netns_pids(ns):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > end:
            raise RuntimeError(f"processes {pids} in namespace {ns} would not die")
        time.sleep(0.05)


def _remove_run(run: str) -> None:
    """Everything of one run: processes in its namespaces, namespaces, links."""
    for ns in _ip("netns", "list").stdout.split("\n"):
        name = ns.split(" ")[0]
        if name.startswith(f"{PREFIX}{run}-"):
            _kill_netns_processes(name)
            _ip("netns", "del", name, check=False)
    links = json.loads(_ip("-j", "link", "show").stdout or "[]")
    for link in links:
        if str(link.get("ifname", "")).startswith(f"{PREFIX}{run}"):
            _ip("link", "del", link["ifname"], check=False)
    (RUNS_DIR / run).unlink(missing_ok=True)


def remove_leftovers() -> list[str]:
    """Removes the runs whose owner process is gone; returns their ids."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    runs = {p.name for p in RUNS_DIR.iterdir()}
    for ns in _ip("netns", "list").stdout.split("\n"):
        name = ns.split(" ")[0]
        if name.startswith(PREFIX) and "-" in name:
            runs.add(name[len(PREFIX) : name.index("-")])
    removed = []
    for run in sorted(runs):
        marker = RUNS_DIR / run
        try:
            owner = int(marker.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            owner = 0
        if owner and _alive(owner):
            continue
        _remove_run(run)
        removed.append(run)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for route in json.loads(_ip("-j", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and ":" not in dst:
            with suppress(ValueError):
                used.append(ipaddress.ip_network(dst, strict=False))
    for link in json.loads(_ip("-j", "addr", "show").stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return used


def pick_subnet() -> ipaddress.IPv4Network:
    """A 10.213.X.0/24 that overlaps no route or address on this machine."""
    used = _used_networks()
    candidates = list(range(256))
    random.shuffle(candidates)
    for x in candidates:
        net = ipaddress.ip_network(f"10.213.{x}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free 10.213.X.0/24 subnet on this machine")


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    veth: str
    """The host-side end on the bridge."""


@dataclass
class Network:
    run_id: str
    subnet: ipaddress.IPv4Network
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def bridge_ip(self) -> str:
        return str(self.subnet.network_address + 1)

    def _exec(self, host: str, args: Sequence[str]) -> list[str]:
        """The command inside the host's network namespace, with the host's hostname."""
        h = self.hosts[host]
        hostname = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', h.name]
        return ["ip", "netns", "exec", h.ns, *hostname, *args]

    def popen(
        self,
        host: str,
        args: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """A long-running process on ``host``; stopped at cleanup by its PID."""
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                self._exec(host, args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(
        self,
        host: str,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """A command on ``host``, to completion (``curl``, ``dig``, the CLI)."""
        return subprocess.run(
            self._exec(host, args),
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=timeout,
        )

    # partitions --------------------------------------------------------------------------
    def link_down(self, host: str) -> None:
        """The host's cable pulled: nothing in or out but its loopback."""
        _ip("link", "set", self.hosts[host].veth, "down")

    def link_up(self, host: str) -> None:
        _ip("link", "set", self.hosts[host].veth, "up")

    def blackhole(self, host: str, other: str) -> None:
        """``host`` can no longer send to ``other`` (one direction; call twice for both)."""
        _ip("-n", self.hosts[host].ns, "route", "add", "blackhole", f"{self.hosts[other].ip}/32")

    def unblackhole(self, host: str, other: str) -> None:
        _ip("-n", self.hosts[host].ns, "route", "del", "blackhole", f"{self.hosts[other].ip}/32")

    def drop(self, host: str, other: str, *, add: bool = True) -> None:
        """An iptables DROP in ``host`` of everything from ``other`` (``add=False`` lifts it)."""
        rule = ["INPUT", "-s", self.hosts[other].ip, "-j", "DROP"]
        action = "-A" if add else "-D"
        cmd = ["ip", "netns", "exec", self.hosts[host].ns, "iptables", action, *rule]
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)

    def crash(self, host: str) -> None:
        """A dead machine: its link down, then every process on it SIGKILLed."""
        self.link_down(host)
        _kill_netns_processes(self.hosts[host].ns)

    # lifecycle ---------------------------------------------------------------------------
    def add_host(self, name: str) -> Host:
        index = len(self.hosts)
        ip = str(self.subnet.network_address + 10 + index)
        ns = f"{PREFIX}{self.run_id}-{name}"
        veth, peer = f"{PREFIX}{self.run_id}v{index}", f"{PREFIX}{self.run_id}p{index}"
        _ip("netns", "add", ns)
        self.hosts[name] = host = Host(name, ns, ip, veth)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", ns, "link", "set", peer, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _remove_run(self.run_id)


@contextmanager
def network(names: Sequence[str]) -> Iterator[Network]:
    """Hosts ``names`` on a fresh bridge (which has the subnet's ``.1``, so the test
    process can reach them too); all of it removed on exit."""
    if os.geteuid() != 0:
        raise PermissionError("network namespaces need root")
    remove_leftovers()
    run = secrets.token_hex(2)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    (RUNS_DIR / run).write_text(f"{os.getpid()}\n")
    net = Network(run, pick_subnet(), f"{PREFIX}{run}br")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.bridge_ip}/{net.subnet.prefixlen}", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for name in names:
            net.add_host(name)
        yield net
    finally:
        net.close()
