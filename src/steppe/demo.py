"""``make demo``: a dev agent, a web job of three instances, and a look at each.

Everything goes through the same commands a user types (``steppe agent -dev``,
``steppe job run``...), printed before they run. Whatever happens, including Ctrl-C,
the agent and its tasks are stopped before the demo exits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

WEB_JOB = """\
job "web" {
  datacenters = ["dc1"]

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


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _wait(what: str, check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    http, catalog, dns = _pick(4646), _pick(8500), _pick(8600)
    addr = f"http://127.0.0.1:{http}"
    env = {**os.environ, "STEPPE_ADDR": addr, "CONSUL_HTTP_ADDR": f"127.0.0.1:{catalog}"}
    work = Path(tempfile.mkdtemp(prefix="steppe-demo-"))
    job_file = work / "web.hcl"
    job_file.write_text(WEB_JOB % {"python": sys.executable, "server": SERVER.replace('"', '\\"')})
    log = (work / "agent.log").open("wb")

    _say(f"Starting a dev agent (HTTP {http}, catalog {catalog}, DNS {dns})")
    print(f"$ steppe agent -dev -http-port {http}    # log: {work / 'agent.log'}", flush=True)
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "steppe",
            "agent",
            "-dev",
            "-http-port",
            str(http),
            "-consul-http-port",
            str(catalog),
            "-dns-port",
            str(dns),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        _wait("the agent", lambda: any(n["Status"] == "ready" for n in _get(addr + "/v1/nodes")))  # type: ignore[attr-defined]
        _run(env, "node", "status")

        _say("Running a web job: 3 instances of a small HTTP server, each on its own port")
        print(job_file.read_text().replace(SERVER.replace('"', '\\"'), "<tiny HTTP server>"))
        _run(env, "job", "run", str(job_file))

        _say("Job status")
        _run(env, "job", "status", "web")

        _say("Asking every instance")
        for stub in _get(addr + "/v1/job/web/allocations"):  # type: ignore[attr-defined]
            alloc = _get(f"{addr}/v1/allocation/{stub['ID']}")
            port = alloc["AllocatedResources"]["Shared"]["Ports"][0]  # type: ignore[index]
            url = f"http://{port['HostIP']}:{port['Value']}/"
            _wait(url, lambda url=url: urllib.request.urlopen(url, timeout=5).status == 200)
            with urllib.request.urlopen(url, timeout=5) as r:
                print(f"$ curl {url}\n{r.read().decode().strip()}")

        _say("Stopping the job")
        _run(env, "job", "stop", "web")
        _say("Demo complete")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
