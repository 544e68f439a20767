"""A real catalog dev server process per test module, driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Agent:
    url: str
    port: int

    def call(self, method: str, path: str, body: bytes | str | Any = None) -> Reply:
        data: bytes | None
        if body is None or isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    def get(self, path: str) -> Reply:
        return self.call("GET", path)

    def put(self, path: str, body: bytes | str | Any = None) -> Reply:
        return self.call("PUT", path, body)


def start_devserver(*extra: str) -> tuple[subprocess.Popen[bytes], Agent]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "steppe.api.consul._devserver", "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("ready"):
        stop_process(proc)
        raise RuntimeError(f"dev server did not start: {line!r}")
    return proc, Agent(f"http://127.0.0.1:{port}", port)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    proc, handle = start_devserver(
        "--session-ttl-min", "0.2", "--lease-check-interval", "0.05",
        "--sync-interval", "0.5", "--enable-script-checks",
    )  # fmt: skip
    try:
        yield handle
    finally:
        stop_process(proc)
