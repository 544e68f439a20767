"""A private Docker engine for tests and the demo, never the machine's own.

Each instance gets its own socket, data root, exec root, pidfile and bridge, so parallel test
sessions (and a developer's real Docker, if any) never see each other's containers. No
iptables rules are written: published ports go through docker's userland proxy, which
listens on the host address and forwards over the private bridge, which is all loopback
tests need.

Also a command line for scripts (``scripts/dockerd.sh``)::

    python tests/support/dockerd.py start DIR   # prints DOCKER_HOST=unix://DIR/docker.sock
    python tests/support/dockerd.py stop DIR
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_SCRIPT = REPO_ROOT / "scripts" / "local-images.sh"
BRIDGE_FILE = "bridge"
OWNER_FILE = "owner"
TEMP_DIR = "/tmp"
TEMP_PREFIX = "stpd-"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1


class DockerdError(RuntimeError):
    """The private engine could not be started or stopped; the message says why."""


def unavailable_reason() -> str | None:
    """Why a private engine cannot run here (tests skip with this), or None if it can."""
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    for tool in ("dockerd", "docker", "ip", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} not found (make system-deps installs docker.io and busybox-static)"
    return None


@dataclass
class PrivateDockerd:
    root: Path
    pid: int
    bridge: str

    @property
    def host(self) -> str:
        return f"unix://{self.root}/docker.sock"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs the docker CLI against this engine only."""
        return subprocess.run(
            ["docker", *args], env=self.env(), capture_output=True, text=True, check=check
        )

    def build_images(self) -> None:
        done = subprocess.run(
            ["bash", str(IMAGES_SCRIPT)], env=self.env(), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise DockerdError(f"building local images failed: {done.stderr.strip()}")

    def remove_all_containers(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, check=False)

    def stop(self) -> None:
        """Removes every container, stops the daemon by PID, and deletes what it left."""
        if self.pid and _is_our_dockerd(self.pid, self.root):
            with contextlib.suppress(OSError):
                self.remove_all_containers()
            children = _children(self.pid)
            _terminate(self.pid)
            for child, started in children:
                _terminate(child, timeout=5.0, started=started)
        _unmount_under(self.root)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        if not _mounts_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the test process dies, so
    even a test run killed outright leaves no daemon behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(
    root: Path | None = None, *, timeout: float = START_TIMEOUT, die_with_parent: bool = True
) -> PrivateDockerd:
    """Starts a private dockerd under ``root`` (a fresh temp dir by default) and waits for it.

    ``die_with_parent=False`` lets it outlive this process (for scripts; stop it with
    ``attach(root).stop()``)."""
    # Unix socket paths are limited to 108 bytes and containerd nests sockets deep
    # inside the exec root: keep the root short.
    if root is None:
        reap_abandoned()
        root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_DIR))
    root.mkdir(parents=True, exist_ok=True)
    if die_with_parent:
        (root / OWNER_FILE).write_text(str(os.getpid()))
    bridge = _make_bridge()
    (root / BRIDGE_FILE).write_text(bridge)
    log = (root / "dockerd.log").open("ab")
    cmd = [
        "dockerd",
        f"--host=unix://{root}/docker.sock",
        f"--data-root={root}/data",
        f"--exec-root={root}/exec",
        f"--pidfile={root}/docker.pid",
        f"--bridge={bridge}",
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--userland-proxy=true",
        "--storage-driver=overlay2",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if die_with_parent else None,
    )
    log.close()
    daemon = PrivateDockerd(root=root, pid=proc.pid, bridge=bridge)
    deadline = time.monotonic() + timeout
    while daemon.docker("version", check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = _tail(root / "dockerd.log")
            daemon.stop()
            raise DockerdError(f"private dockerd did not come up (see {root}/dockerd.log):\n{tail}")
        time.sleep(0.1)
    return daemon


def attach(root: Path) -> PrivateDockerd:
    """The engine a previous ``start`` left under ``root``, running or not, so that ``stop``
    can clean up after it (pid 0 when the daemon already exited and removed its pidfile)."""
    try:
        bridge = (root / BRIDGE_FILE).read_text().strip()
    except OSError as exc:
        raise DockerdError(f"no private dockerd recorded under {root}: {exc}") from exc
    try:
        pid = int((root / "docker.pid").read_text().strip())
    except (OSError, ValueError):
        pid = 0
    return PrivateDockerd(root=root, pid=pid, bridge=bridge)


@contextlib.contextmanager
def running(*, images: bool = True) -> Iterator[PrivateDockerd]:
    """A private engine with the local images built, torn down even when the body fails."""
    daemon = start()
    try:
        if images:
            daemon.build_images()
        yield daemon
    finally:
        daemon.stop()


def session_fixture() -> Iterator[str]:
    """Body of the session fixture ``private_dockerd``: yields its DOCKER_HOST.

    Register it with ``pytest.fixture(scope="session", name="private_dockerd")``."""
    import pytest

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with running() as daemon:
        yield daemon.host


def reap_abandoned() -> None:
    """Removes what test runs killed outright left behind (their daemon died with them, see
    :func:`_die_with_parent`): dirs whose owning process is gone, and their bridges."""
    for root in Path(TEMP_DIR).glob(f"{TEMP_PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being set up, or started by a script: not ours to judge
        if _alive(owner):
            continue
        with contextlib.suppress(DockerdError):
            attach(root).stop()


def _make_bridge() -> str:
    """A bridge of our own on a /24 no interface here uses yet."""
    used = _used_networks()
    for _ in range(50):
        name = f"stpd{random.randrange(16**6):06x}"
        net = ipaddress.ip_network(f"10.{random.randrange(200, 250)}.{random.randrange(256)}.0/24")
        if any(net.overlaps(u) for u in used):
            continue
        made = subprocess.run(
            ["ip", "link", "add", name, "type", "bridge"], capture_output=True, text=True
        )
        if made.returncode != 0:
            continue
        gateway = f"{next(net.hosts())}/{net.prefixlen}"
        subprocess.run(["ip", "addr", "add", gateway, "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        return name
    raise DockerdError("could not create a private bridge (ip link add ... type bridge)")


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    return nets


def _is_our_dockerd(pid: int, root: Path) -> bool:
    """Guards against killing a recycled PID: only a dockerd started on this root qualifies."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(cmdline)
        and cmdline[0].endswith(b"dockerd")
        and str(root).encode() in b" ".join(cmdline)
    )


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ..., starttime at 19]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _children(pid: int) -> list[tuple[int, str]]:
    """Child PIDs with their start times, so a PID reused later is never signalled."""
    kids = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if len(fields) > 19 and fields[1] == str(pid):
            kids.append((int(entry.name), fields[19]))
    return kids


def _terminate(pid: int, timeout: float = STOP_TIMEOUT, started: str | None = None) -> None:
    if started is not None and (_stat(pid)[19:20] or [None])[0] != started:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [p for p in points if p.startswith(prefix)]


def _unmount_under(root: Path) -> None:
    for point in reversed(_mounts_under(root)):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: dockerd.py start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    try:
        if argv[0] == "start":
            reason = unavailable_reason()
            if reason:
                print(f"docker unavailable: {reason}", file=sys.stderr)
                return 1
            daemon = start(root, die_with_parent=False)
            daemon.build_images()
            print(f"DOCKER_HOST={daemon.host}")
        else:
            attach(root).stop()
    except DockerdError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
