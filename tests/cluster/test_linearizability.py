"""Clients doing KV compare-and-set and ``?consistent`` reads on a few keys through
different catalog servers, while servers are killed and restarted; the recorded history
must be linearizable."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.cluster import Cluster, ClusterAgent, HTTPFailure, get_json, running_cluster
from tests.support.cluster import request as http
from tests.support.linearizability import Op, check
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)
KEYS = ("lin/a", "lin/b", "lin/c")
CLIENTS = 6
OP_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster(servers=3, clients=0) as c:
        yield c


class Recorder:
    """One history for all clients; each op's times come from one monotonic clock."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.known = 0
        self._lock = threading.Lock()
        self._values = itertools.count()

    def add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)
            self.known += op.known

    def unique_value(self, process: int) -> str:
        return f"p{process}-{next(self._values)}"


def _outcome_unknown(exc: Exception) -> bool:
    """A refused connection never reached a server; anything else may have."""
    return not isinstance(exc, ConnectionRefusedError) and not (
        isinstance(getattr(exc, "reason", None), ConnectionRefusedError)
    )


def _read(server: ClusterAgent, key: str) -> tuple[str, int] | None:
    try:
        rows = get_json(f"{server.catalog}/v1/kv/{key}?consistent", timeout=OP_TIMEOUT)
    except HTTPFailure as exc:
        if exc.status == 404:
            return None
        raise
    import base64

    return base64.b64decode(rows[0]["Value"]).decode(), int(rows[0]["ModifyIndex"])


def _client(
    process: int, cluster: Cluster, history: Recorder, stop: threading.Event, seed: int
) -> None:
    rng = random.Random(seed)
    last_index: dict[str, int] = {}
    while not stop.is_set():
        server = rng.choice(cluster.servers)
        key = rng.choice(KEYS)
        if rng.random() < 0.5:
            started = time.monotonic()
            try:
                result = _read(server, key)
            except (OSError, HTTPFailure):
                continue  # an unknown read constrains nothing
            done = time.monotonic()
            history.add(Op(f"{process}@{server.name}", key, "read", started, done, result=result))
            last_index[key] = result[1] if result else 0
            continue
        value = history.unique_value(process)
        expected = last_index.get(key, 0)
        url = f"{server.catalog}/v1/kv/{key}?cas={expected}"
        started = time.monotonic()
        try:
            answer = http(url, "PUT", value.encode(), timeout=OP_TIMEOUT).strip() == b"true"
            completed: float | None = time.monotonic()
        except (OSError, HTTPFailure) as exc:
            if not _outcome_unknown(exc):
                continue
            answer, completed = False, None
        op = Op(f"{process}@{server.name}", key, "cas", started, completed, value, expected, answer)
        history.add(op)


def _progress(history: Recorder, more: int) -> None:
    target = history.known + more
    wait_until(lambda: history.known >= target, timeout=60, what=f"{more} more operations")


def test_kv_cas_and_consistent_reads_are_linearizable_through_server_kills(
    cluster: Cluster, tmp_path: Path
) -> None:
    history = Recorder()
    stop = threading.Event()
    workers = [
        threading.Thread(target=_client, args=(p, cluster, history, stop, p), daemon=True)
        for p in range(CLIENTS)
    ]
    for w in workers:
        w.start()
    try:
        _progress(history, 60)
        for victim in (cluster.servers[0], cluster.servers[2], cluster.servers[1]):
            print(f"kill {victim.name} at {time.monotonic()}")
            victim.kill(signal.SIGKILL)
            _progress(history, 60)
            cluster.start([victim])
            print(f"start {victim.name} at {time.monotonic()}")
            wait_until(
                lambda v=victim: _read(v, KEYS[0]) or True, timeout=60, what=f"{victim.name} back"
            )
            _progress(history, 40)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    ops = history.ops
    unknown = sum(not op.known for op in ops)
    succeeded = sum(op.kind == "cas" and op.known and op.result is True for op in ops)
    print(f"history: {len(ops)} ops, {succeeded} successful CAS, {unknown} unknown outcomes")
    assert succeeded > 0
    verdict = check(ops)
    if not verdict:
        dump = tmp_path / "history.json"
        dump.write_text(json.dumps([dataclasses.asdict(op) for op in ops]))
        print(f"history written to {dump}")
    assert verdict, f"not linearizable on {verdict.key}: {verdict.reason}"
