"""Raw etcd figures on this machine: the ceiling Steppe's own write path is judged against.

Starts its own 3-member etcd cluster on free loopback ports (tuned like Steppe servers
tune theirs), then measures:

- puts/s through aetcd with 64 requests in flight (the "raw etcd" baseline),
- puts/s through :class:`steppe.backend.EtcdBackend` with the same load,
- leader kill (SIGKILL) to the first committed write, median of 5.

Usage: ``python bench/etcd_raw.py [--puts N] [--runs N]``; prints the figures and writes
``bench/results/etcd_raw.json``. ``bench/cluster.py`` reuses the ``measure_*`` functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aetcd

from steppe.backend import EtcdBackend
from steppe.errors import BackendError
from steppe.etcdmember import EtcdMember, find_leader

RESULTS = Path(__file__).parent / "results" / "etcd_raw.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_cluster(base_dir: Path, size: int = 3, **member_kwargs: Any) -> list[EtcdMember]:
    """A new ``size``-member cluster on free loopback ports, healthy on return."""
    members = [
        EtcdMember(
            f"m{i}",
            base_dir / f"m{i}",
            client_url=f"http://127.0.0.1:{free_port()}",
            peer_url=f"http://127.0.0.1:{free_port()}",
            **member_kwargs,
        )
        for i in range(size)
    ]
    peers = {m.name: m.peer_url for m in members}
    try:
        for m in members:
            m.initial_cluster = dict(peers)
            m.spawn()
        await asyncio.gather(*(m.wait_healthy(30) for m in members))
    except BaseException:
        stop_cluster(members)
        raise
    return members


def stop_cluster(members: Sequence[EtcdMember]) -> None:
    for m in members:
        m.kill()


async def _run_concurrently(
    one: Callable[[int], Awaitable[object]], total: int, in_flight: int
) -> float:
    """Runs ``one(i)`` for i < total with ``in_flight`` workers; returns operations/s."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return total / (time.perf_counter() - started)


async def measure_raw_puts(
    endpoint: str, *, total: int = 20_000, in_flight: int = 64, value_size: int = 100
) -> float:
    """Puts/s through aetcd's own client against one member (``host:port``)."""
    host, port = endpoint.rsplit(":", 1)
    value = b"x" * value_size
    client = aetcd.Client(host=host, port=int(port), timeout=10)
    try:
        await client.put(b"/bench/warmup", value)
        return await _run_concurrently(
            lambda i: client.put(f"/bench/raw/{i % 1000}".encode(), value), total, in_flight
        )
    finally:
        await client.close()


async def measure_backend_puts(
    endpoints: Sequence[str], *, total: int = 20_000, in_flight: int = 64, value_size: int = 100
) -> float:
    """Puts/s through Steppe's EtcdBackend (same load as :func:`measure_raw_puts`)."""
    value = b"x" * value_size
    backend = EtcdBackend(endpoints, request_timeout=10)
    try:
        await backend.put("/bench/warmup", value)
        return await _run_concurrently(
            lambda i: backend.put(f"/bench/backend/{i % 1000}", value), total, in_flight
        )
    finally:
        await backend.close()


async def _leader(members: Sequence[EtcdMember], timeout: float = 30.0) -> EtcdMember:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        name = await find_leader({m.name: m.endpoint for m in members if m.running})
        if name:
            return next(m for m in members if m.name == name)
        await asyncio.sleep(0.05)
    raise BackendError("no etcd leader")


async def measure_failover_once(members: Sequence[EtcdMember], attempt_timeout: float) -> float:
    """Seconds from SIGKILL of the etcd leader to the first write etcd acknowledges.

    Writes go through a fresh EtcdBackend over every member, retried every
    ``attempt_timeout`` (a write forwarded to the dead leader is silently dropped by
    etcd, so only a client-side timeout ends it; retrying is safe, same key, same value).
    """
    leader = await _leader(members)
    backend = EtcdBackend([m.endpoint for m in members], request_timeout=attempt_timeout)
    try:
        await backend.put("/bench/failover", b"before")
        leader.kill()
        killed = time.perf_counter()
        while True:
            try:
                await backend.put("/bench/failover", b"after")
                elapsed = time.perf_counter() - killed
                break
            except BackendError:
                continue
    finally:
        await backend.close()
    await leader.restart(timeout=30)
    await asyncio.gather(*(m.wait_healthy(30) for m in members))
    return elapsed


async def measure_failover(
    members: Sequence[EtcdMember], *, runs: int = 5, attempt_timeout: float = 0.25
) -> list[float]:
    return [await measure_failover_once(members, attempt_timeout) for _ in range(runs)]


async def main(puts: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="steppe-bench-etcd-") as tmp:
        members = await start_cluster(Path(tmp))
        try:
            leader = await _leader(members)
            raw_leader = await measure_raw_puts(leader.endpoint, total=puts)
            follower = next(m for m in members if m is not leader)
            raw_follower = await measure_raw_puts(follower.endpoint, total=puts)
            backend = await measure_backend_puts([m.endpoint for m in members], total=puts)
            failovers = await measure_failover(members, runs=runs)
        finally:
            stop_cluster(members)
    m0 = members[0]
    return {
        "etcd": {"members": 3, "heartbeat_ms": m0.heartbeat_ms, "election_ms": m0.election_ms},
        "puts": puts,
        "in_flight": 64,
        "raw_aetcd_puts_per_s_leader": round(raw_leader),
        "raw_aetcd_puts_per_s_follower": round(raw_follower),
        "etcd_backend_puts_per_s": round(backend),
        "leader_kill_to_write_s": [round(f, 3) for f in failovers],
        "leader_kill_to_write_median_s": round(statistics.median(failovers), 3),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(main(args.puts, args.runs))
    rows = [
        ("raw etcd puts/s (aetcd, 64 in flight), to leader", "raw_aetcd_puts_per_s_leader"),
        ("raw etcd puts/s (aetcd, 64 in flight), to follower", "raw_aetcd_puts_per_s_follower"),
        ("EtcdBackend puts/s (64 in flight)", "etcd_backend_puts_per_s"),
    ]
    for label, key in rows:
        print(f"{label + ':':<52} {result[key]:>7}")
    print(
        f"leader kill -> first committed write, median of {args.runs}: "
        f"{result['leader_kill_to_write_median_s']:.3f} s {result['leader_kill_to_write_s']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    cli()
