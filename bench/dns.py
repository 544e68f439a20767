"""DNS queries/s: Steppe's DNS server against dnsmasq serving the same records, with dnsperf.

Both serve service ``web`` with four instances on nodes node0..node3 (10.0.0.1-4, ports
8080-8083): ``_web._tcp.service.consul`` SRV (four SRV answers plus the four target A
records in the additional section) and ``web.service.consul`` A (four A records).
Steppe runs under uvloop in its own process; dnsmasq (Debian's ``/usr/sbin/dnsmasq``) runs
as a private instance on its own spare port with no upstreams, hosts file or config file.
dnsperf then drives each server for a fixed time, one query type at a time.

Each server is run ``--rounds`` times per query type, alternating, and its best run counts:
other work on the machine only ever lowers a figure.

Usage: ``python bench/dns.py [--seconds 10] [--rounds 3]``; prints the figures and writes
``bench/results/dns.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "dns.json"
DNSMASQ = "/usr/sbin/dnsmasq"
TARGET_RATIO = 0.9
INSTANCES = [(f"node{i}", f"10.0.0.{i + 1}", 8080 + i) for i in range(4)]
QUERIES = {"SRV": "_web._tcp.service.consul SRV", "A": "web.service.consul A"}


def free_port() -> int:
    """A port free for both UDP and TCP on loopback right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def start_steppe(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """``steppe agent -dev`` answering DNS on ``port``, with the four instances registered
    through its catalog API, as any external service would be."""
    # udp_answer_limit defaults to 3 for plain 512-byte queries, as in Consul; dnsmasq hands
    # out all four records, so Steppe does too here.
    config = workdir / "dns.hcl"
    config.write_text("dns_config {\n  udp_answer_limit = 8\n}\n")
    catalog = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "steppe",
            "agent",
            "-dev",
            "-config",
            str(config),
            "-dns-port",
            str(port),
            "-consul-http-port",
            str(catalog),
            "-http-port",
            str(free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            for node, address, service_port in INSTANCES:
                body = json.dumps(
                    {
                        "Node": node,
                        "Address": address,
                        "Service": {"Service": "web", "Port": service_port},
                    }
                ).encode()
                req = urllib.request.Request(
                    f"http://127.0.0.1:{catalog}/v1/catalog/register", data=body, method="PUT"
                )
                urllib.request.urlopen(req, timeout=5).close()
            if answer_counts("127.0.0.1", port)["SRV"][0] == len(INSTANCES):
                return proc
        except (OSError, ValueError, KeyError, subprocess.SubprocessError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit("the Steppe dev agent did not start answering DNS")
        time.sleep(0.2)


def start_dnsmasq(port: int) -> subprocess.Popen[bytes]:
    args = [
        DNSMASQ,
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--log-facility=-",
    ]
    for node, address, service_port in INSTANCES:
        target = f"{node}.node.dc1.consul"
        args += [
            f"--host-record={target},{address}",
            f"--host-record=web.service.consul,{address}",
            f"--srv-host=_web._tcp.service.consul,{target},{service_port},1,1",
        ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            answer_counts("127.0.0.1", port)
            return proc
        except subprocess.CalledProcessError:
            if proc.poll() is not None:
                raise SystemExit(f"dnsmasq exited with {proc.returncode}") from None
    proc.kill()
    raise SystemExit("dnsmasq did not answer within 10 s")


def answer_counts(host: str, port: int) -> dict[str, tuple[int, int]]:
    """(answers, additional A records) per benchmark query, as ``dig`` sees them.

    ``dig`` rather than dnspython: this file's own name shadows the ``dns`` package.
    """
    counts = {}
    for kind, line in QUERIES.items():
        name, rdtype = line.split()
        found = []
        for section in ("+answer", "+additional"):
            command = ["dig", f"@{host}", "-p", str(port), name, rdtype, "+noedns"]
            command += ["+time=1", "+tries=1", "+noall", section]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            found.append(
                sum(1 for row in out.splitlines() if row.split()[3:4] in (["A"], [rdtype]))
            )
        counts[kind] = (found[0], found[1])
    return counts


def dnsperf(port: int, query_file: Path, seconds: float) -> dict[str, float]:
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(query_file)]
    command += ["-l", str(seconds), "-c", "4", "-q", "200", "-t", "2"]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def figure(label: str) -> float:
        match = re.search(rf"{label}:\s+([\d.]+)", out)
        if match is None:
            raise SystemExit(f"dnsperf printed no {label!r}:\n{out}")
        return float(match.group(1))

    return {
        "qps": round(figure("Queries per second"), 1),
        "completed": figure("Queries completed"),
        "lost": figure("Queries lost"),
        "avg_latency_ms": round(figure("Average Latency \\(s\\)") * 1000, 3),
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def best_of(runs: list[dict[str, float]]) -> dict[str, object]:
    best = max(runs, key=lambda r: r["qps"])
    return {**best, "all_qps": [r["qps"] for r in runs]}


def run(seconds: float, rounds: int) -> dict[str, object]:
    """Alternates the two servers run by run, so load from elsewhere hits both alike."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        server: {kind: [] for kind in QUERIES} for server in ("steppe", "dnsmasq")
    }
    load_before = os.getloadavg()
    steppe_port, dnsmasq_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="steppe-dns-bench-") as tmp:
        files = {}
        for kind, line in QUERIES.items():
            files[kind] = Path(tmp) / f"{kind}.txt"
            files[kind].write_text(line + "\n")
        steppe = start_steppe(steppe_port, Path(tmp))
        try:
            dnsmasq = start_dnsmasq(dnsmasq_port)
            try:
                ours, theirs = (
                    answer_counts("127.0.0.1", steppe_port),
                    answer_counts("127.0.0.1", dnsmasq_port),
                )
                if ours != theirs:
                    raise SystemExit(f"records differ: steppe {ours}, dnsmasq {theirs}")
                for _ in range(rounds):
                    for kind, path in files.items():
                        runs["dnsmasq"][kind].append(dnsperf(dnsmasq_port, path, seconds))
                        runs["steppe"][kind].append(dnsperf(steppe_port, path, seconds))
            finally:
                stop(dnsmasq)
        finally:
            stop(steppe)
    results = {
        server: {kind: best_of(kinds[kind]) for kind in QUERIES} for server, kinds in runs.items()
    }
    ratios = {
        kind: round(
            float(results["steppe"][kind]["qps"])  # type: ignore[arg-type]
            / float(results["dnsmasq"][kind]["qps"]),  # type: ignore[arg-type]
            3,
        )
        for kind in QUERIES
    }
    return {
        "seconds_per_run": seconds,
        "rounds": rounds,
        "figure": "best run of each server per query type",
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "records": {k: {"answers": v[0], "additional_a": v[1]} for k, v in ours.items()},
        "cpus": os.cpu_count(),
        "steppe": results["steppe"],
        "dnsmasq": results["dnsmasq"],
        "ratio_steppe_to_dnsmasq": ratios,
        "target_ratio": TARGET_RATIO,
        "meets_target": all(r >= TARGET_RATIO for r in ratios.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf run length")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server and query type")
    args = parser.parse_args()
    report = run(args.seconds, args.rounds)
    print(f"{'query':<6}{'steppe q/s':>14}{'dnsmasq q/s':>14}{'ratio':>8}")
    for kind in QUERIES:
        ours = report["steppe"][kind]["qps"]  # type: ignore[index]
        theirs = report["dnsmasq"][kind]["qps"]  # type: ignore[index]
        ratio = report["ratio_steppe_to_dnsmasq"][kind]  # type: ignore[index]
        print(f"{kind:<6}{ours:>14,.0f}{theirs:>14,.0f}{ratio:>8.2f}")
    verdict = "meets" if report["meets_target"] else "MISSES"
    print(f"target: steppe >= {TARGET_RATIO} x dnsmasq -> {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
