"""``make demo``: a dev agent, a web job of three instances, and a look at each; then,
when Docker can be set up here, the seed job (``nginx.nomad``) unchanged on a private
Docker engine.

Everything goes through the same commands a user types (``steppe agent -dev``,
``steppe job run``...), printed before they run. Whatever happens, including Ctrl-C,
the agent, its tasks and the private Docker engine are stopped before the demo exits.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
DOCKERD_SCRIPT = REPO / "scripts" / "dockerd.sh"
SEED_PATH = REPO.parent / "shared" / "fixtures" / "nginx.nomad"
REGION, DATACENTER = "eu", "ams2"
"""The seed job's own region and first datacenter, so it runs unchanged."""
DOCKER_START_TIMEOUT = 300.0

WEB_JOB = """\
job "web" {
  region      = "eu"
  datacenters = ["ams2"]

  group "web" {
    count = 3

    network {
      port "http" {}
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = "%(python)s"
        args    = ["-c", "%(server)s"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
"""

# A tiny HTTP server that says which allocation answered.
SERVER = (
    "import http.server,os;"
    "e=os.environ;"
    "m=('hello from '+e['NOMAD_ALLOC_NAME']+' ('+e['NOMAD_ALLOC_ID'][:8]+')').encode();"
    "H=type('H',(http.server.BaseHTTPRequestHandler,),{'do_GET':lambda s:(s.send_response(200),"
    "s.end_headers(),s.wfile.write(m+bytes([10]))),'log_message':lambda *a:None});"
    "http.server.HTTPServer(('127.0.0.1',int(os.environ['NOMAD_PORT_http'])),H).serve_forever()"
)


SEED_COPY = """\
job "nginx" {
  region = "eu"
  datacenters = ["ams2", "lon1"]

  group "webserver" {
    count = 4

    restart {
      attempts = 10
      interval = "5m"
      delay = "25s"

      mode = "delay"
    }

    task "nginx" {
      driver = "docker"

      config {
        image = "nginx:latest"
        port_map {
          web = 80
        }
      }

      service {
        name = "nginx"
        port = "web"
        check {
          name = "alive"
          type = "tcp"
          interval = "10s"
          timeout = "2s"
        }
      }

      resources {
        cpu = 500 # 500 Mhz
        memory = 64 # 64MB
        network {
          mbits = 10
          port "web" {
          }
        }
      }
    }
  }
}
"""
"""The seed job, for when the demo runs outside the workspace that holds ``SEED_PATH``."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick(port: int) -> int:
    if _port_free(port):
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free: int = s.getsockname()[1]
        return free


def _say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    print(f"$ steppe {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "steppe", *args], env=env, text=True, capture_output=True
    )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"steppe {' '.join(args)} failed with exit code {result.returncode}")
    return result


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _wait(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


class PrivateDocker:
    """A Docker engine of the demo's own (``scripts/dockerd.sh``): its own socket, data and
    bridge, so the machine's Docker, if any, is never touched."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.host = ""

    def start(self) -> str | None:
        """DOCKER_HOST of the started engine, or None after saying in one line why not."""
        if not DOCKERD_SCRIPT.is_file():
            print(f"Skipping the Docker part: {DOCKERD_SCRIPT} not found", flush=True)
            return None
        # containerd nests sockets deep under the root, and socket paths are short
        self.root = Path(tempfile.mkdtemp(prefix="stpd-demo-", dir="/tmp"))
        print(f'$ eval "$(scripts/dockerd.sh start {self.root})"', flush=True)
        try:
            done = subprocess.run(
                ["bash", str(DOCKERD_SCRIPT), "start", str(self.root)],
                capture_output=True,
                text=True,
                timeout=DOCKER_START_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            print("Skipping the Docker part: the private engine did not start in time", flush=True)
            return None
        found = [w for w in done.stdout.split() if w.startswith("DOCKER_HOST=")]
        if done.returncode != 0 or not found:
            why = (done.stderr.strip().splitlines() or ["no DOCKER_HOST printed"])[-1]
            print(f"Skipping the Docker part: {why}", flush=True)
            return None
        self.host = found[0].removeprefix("DOCKER_HOST=")
        return self.host

    def docker(self, *args: str) -> None:
        print(f"$ docker {shlex.join(args)}", flush=True)
        env = {**os.environ, "DOCKER_HOST": self.host}
        subprocess.run(["docker", *args], env=env, check=False, timeout=60)

    def has_containers(self) -> bool:
        env = {**os.environ, "DOCKER_HOST": self.host}
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=com.steppe.alloc_id"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return listed.returncode != 0 or bool(listed.stdout.strip())

    def stop(self) -> None:
        """Stops the engine (removing its containers) and deletes its directory; safe to call
        after a start that failed half-way."""
        if self.root is None:
            return
        print(f"$ scripts/dockerd.sh stop {self.root}", flush=True)
        subprocess.run(
            ["bash", str(DOCKERD_SCRIPT), "stop", str(self.root)],
            capture_output=True,
            check=False,
            timeout=120,
        )
        # interrupted before the engine was recorded: nothing runs there, only the dir is left
        if self.root.is_dir() and not _mounted_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def _mounted_under(root: Path) -> bool:
    prefix = f"{root.resolve()}/"
    with open("/proc/mounts") as mounts:
        return any(line.split()[1].startswith(prefix) for line in mounts)


def _seed_job(work: Path) -> Path:
    path = work / "nginx.nomad"
    try:
        path.write_text(SEED_PATH.read_text())
        print(f"(the seed job, unchanged, from {SEED_PATH})")
    except OSError:
        path.write_text(SEED_COPY)
    return path


def _instances(addr: str, job: str) -> list[str]:
    """Each running allocation's assigned address, asked over HTTP until it answers."""
    urls = []
    for stub in _get(f"{addr}/v1/job/{job}/allocations"):
        if stub["DesiredStatus"] != "run":
            continue
        alloc = _get(f"{addr}/v1/allocation/{stub['ID']}")
        port = alloc["AllocatedResources"]["Shared"]["Ports"][0]
        url = f"http://{port['HostIP']}:{port['Value']}/"
        _wait(url, functools.partial(_answers, url))
        urls.append(url)
    return urls


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as r:
        return int(r.status) == 200


def _running(addr: str, job: str, count: int) -> bool:
    allocs = [a for a in _get(f"{addr}/v1/job/{job}/allocations") if a["DesiredStatus"] == "run"]
    return len(allocs) == count and all(a["ClientStatus"] == "running" for a in allocs)


def _web_part(env: dict[str, str], addr: str, job_file: Path) -> None:
    _say("Running a web job: 3 instances of a small HTTP server, each on its own port")
    print(job_file.read_text().replace(SERVER.replace('"', '\\"'), "<tiny HTTP server>"))
    _run(env, "job", "run", str(job_file))

    _say("Job status")
    _run(env, "job", "status", "web")

    _say("Asking every instance")
    for url in _instances(addr, "web"):
        with urllib.request.urlopen(url, timeout=5) as r:
            print(f"$ curl {url}\n{r.read().decode().strip()}")

    _say("Stopping the job")
    _run(env, "job", "stop", "web")


def _docker_part(env: dict[str, str], addr: str, docker: PrivateDocker, work: Path) -> None:
    _say("The seed job: 4 nginx containers through the docker driver")
    seed = _seed_job(work)
    print(seed.read_text())
    _run(env, "job", "run", str(seed))
    _wait("4 running nginx allocations", lambda: _running(addr, "nginx", 4))
    _run(env, "job", "status", "nginx")
    fmt = '{{.ID}}  {{.Image}}  {{.Status}}  alloc={{.Label "com.steppe.alloc_id"}}'
    docker.docker("ps", "--format", fmt)

    _say("Asking every nginx on the address the scheduler gave it (NOMAD_ADDR_web)")
    for url in _instances(addr, "nginx"):
        with urllib.request.urlopen(url, timeout=5) as r:
            title = next((ln for ln in r.read().decode().splitlines() if "nginx" in ln), "")
            print(f"$ curl {url}\n{title.strip()}")

    _say("Stopping the seed job")
    _run(env, "job", "stop", "nginx")
    _wait("the containers removed", lambda: not docker.has_containers())
    docker.docker("ps", "--format", fmt)


def _start_agent(
    env: dict[str, str], ports: tuple[int, int, int], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    http, catalog, dns = ports
    _say(f"Starting a dev agent (HTTP {http}, catalog {catalog}, DNS {dns})")
    args = ["agent", "-dev", "-region", REGION, "-dc", DATACENTER, "-http-port", str(http)]
    args += ["-consul-http-port", str(catalog), "-dns-port", str(dns)]
    print(f"$ steppe {' '.join(args)}", flush=True)
    return subprocess.Popen(
        [sys.executable, "-m", "steppe", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _stop_agent(agent: subprocess.Popen[bytes] | None) -> None:
    if agent is None or agent.poll() is not None:
        return
    agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


def main() -> int:
    http, catalog, dns = _pick(4646), _pick(8500), _pick(8600)
    addr = f"http://127.0.0.1:{http}"
    env = {**os.environ, "STEPPE_ADDR": addr, "CONSUL_HTTP_ADDR": f"127.0.0.1:{catalog}"}
    work = Path(tempfile.mkdtemp(prefix="steppe-demo-"))
    job_file = work / "web.hcl"
    job_file.write_text(WEB_JOB % {"python": sys.executable, "server": SERVER.replace('"', '\\"')})
    docker = PrivateDocker()
    agent: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with (work / "agent.log").open("wb") as log:
            _say("Setting up a private Docker engine for the seed job (scripts/dockerd.sh)")
            if docker.start():
                env["DOCKER_HOST"] = docker.host
            agent = _start_agent(env, (http, catalog, dns), log)
            print(f"(agent log: {work / 'agent.log'})", flush=True)
            _wait(
                "the agent", lambda: any(n["Status"] == "ready" for n in _get(addr + "/v1/nodes"))
            )
            _run(env, "node", "status")
            _web_part(env, addr, job_file)
            if docker.host:
                _docker_part(env, addr, docker, work)
        _say("Demo complete")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        _stop_agent(agent)
        docker.stop()


if __name__ == "__main__":
    sys.exit(main())
