"""KV throughput of one dev agent over HTTP: PUT and GET requests/s with 64 concurrent
clients (keep-alive connections), against a ``steppe agent -dev`` started here.

    .venv/bin/python bench/kv.py [--seconds 5] [--clients 64]

Prints the figures and writes them to ``bench/results/kv.json``. The load generator is a
minimal HTTP/1.1 client on raw asyncio protocols (uvloop) so it costs the server's core as
little as possible; on a 2-core machine client and server share the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent


class _Conn(asyncio.Protocol):
    """One keep-alive connection that sends the next request as soon as a reply is whole."""

    def __init__(self, requests: list[bytes], stop_at: float, done: asyncio.Future[int]) -> None:
        self.requests = requests
        self.stop_at = stop_at
        self.done = done
        self.buf = b""
        self.count = 0
        self.errors = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.transport.write(self.requests[self.count % len(self.requests)])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end]
            length = 0
            cl = head.lower().find(b"content-length:")
            if cl >= 0:
                length = int(head[cl + 15 : head.find(b"\r\n", cl)].strip() or b"0")
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.errors += 1
            self.buf = self.buf[total:]
            self.count += 1
            if time.monotonic() >= self.stop_at:
                if not self.done.done():
                    self.done.set_result(self.count)
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.count)


async def _run(
    port: int, clients: int, seconds: float, requests: list[list[bytes]]
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    stop_at = time.monotonic() + seconds
    futures: list[asyncio.Future[int]] = []
    conns: list[_Conn] = []
    start = time.monotonic()
    for i in range(clients):
        fut: asyncio.Future[int] = loop.create_future()
        futures.append(fut)
        reqs = requests[i % len(requests)]
        _, proto = await loop.create_connection(
            lambda r=reqs, f=fut: _Conn(r, stop_at, f), "127.0.0.1", port
        )
        conns.append(proto)
    await asyncio.gather(*futures)
    elapsed = time.monotonic() - start
    total = sum(c.count for c in conns)
    return {"requests": total, "seconds": elapsed, "per_second": total / elapsed,
            "errors": sum(c.errors for c in conns)}  # fmt: skip


def _put(key: str, value: bytes) -> bytes:
    return (
        f"PUT /v1/kv/{key} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(value)}\r\n\r\n"
    ).encode() + value


def _get(key: str) -> bytes:
    return f"GET /v1/kv/{key} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(server: subprocess.Popen[bytes], port: int) -> None:
    """Until the dev agent's catalog answers (or it exits)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the dev agent exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("the dev agent did not answer in 60 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="best of; the machine is shared")
    args = parser.parse_args()
    port = _free_port()
    ports = ["-http-port", str(_free_port()), "-dns-port", str(_free_port())]
    server = subprocess.Popen(
        [sys.executable, "-m", "steppe", "agent", "-dev", "-consul-http-port", str(port), *ports],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        _wait_ready(server, port)
        value = b"x" * 100
        puts = [[_put(f"bench/{c}/{i}", value) for i in range(100)] for c in range(args.clients)]
        gets = [[_get(f"bench/{c}/{i}") for i in range(100)] for c in range(args.clients)]
        uvloop.install()
        put_runs: list[dict[str, float]] = []
        get_runs: list[dict[str, float]] = []
        for _ in range(args.rounds):
            put_runs.append(asyncio.run(_run(port, args.clients, args.seconds, puts)))
            get_runs.append(asyncio.run(_run(port, args.clients, args.seconds, gets)))
        put = max(put_runs, key=lambda r: r["per_second"])
        get = max(get_runs, key=lambda r: r["per_second"])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    result = {
        "clients": args.clients,
        "put_per_second": round(put["per_second"]),
        "get_per_second": round(get["per_second"]),
        "figure": f"best of {args.rounds} rounds (other work on the machine only lowers one)",
        "put_all": [round(r["per_second"]) for r in put_runs],
        "get_all": [round(r["per_second"]) for r in get_runs],
        "put_errors": put["errors"],
        "get_errors": get["errors"],
        "targets": {"put_per_second": 4000, "get_per_second": 10000},
        "cpus": os.cpu_count(),
    }
    print(f"KV PUT: {result['put_per_second']:>8,} req/s  ({put['errors']} errors)")
    print(f"KV GET: {result['get_per_second']:>8,} req/s  ({get['errors']} errors)")
    out = ROOT / "bench" / "results" / "kv.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
