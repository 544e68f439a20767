"""Steppe on a real 3-server cluster (separate processes, each with its etcd members, on
their own loopback addresses), side by side with the etcd underneath it:

- raw etcd puts/s (aetcd, 64 in flight) against the servers' datacenter etcd cluster,
  and Steppe KV PUT/s through the catalog HTTP API with 64 keep-alive connections
  spread over the three servers, in alternating rounds, compared by their medians;
- placements/s: ``--nodes`` simulated nodes registered (and heartbeated) over the
  servers' RPC like real clients, then jobs of 100 instances (``bench/scheduler.py``'s
  shape) registered over HTTP; placements counted in the region's etcd;
- leader kill (SIGKILL of the scheduler leader's agent, its etcd members die with it) to
  the first committed write through a surviving server, median of ``--runs``: a KV PUT,
  a job register, and the new scheduler leader, each measured separately.

Each measure runs on a newly formed cluster (3 servers, no clients), the leader kills
last.

Usage: ``python bench/cluster.py [--nodes 5000] [--jobs 50] [--runs 5]``; prints the
figures and writes ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aetcd
import aiohttp
from aetcd import rpc
from aetcd.utils import prefix_range_end

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.support.cluster import Cluster, ClusterAgent, new_cluster  # noqa: E402

import etcd_raw  # noqa: E402
import scheduler as scheduler_bench  # noqa: E402
from kv import _Conn  # noqa: E402
from steppe.rpc import RemoteServerAPI  # noqa: E402
from steppe.state import Keys  # noqa: E402
from steppe.structs import Job, Node, to_json  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cluster.json"
IN_FLIGHT = 64
SUBMITTERS = 8
COUNT_EVERY = 0.5
PARTS = ["kv", "placements", "failover"]


# KV ------------------------------------------------------------------------------------
async def steppe_kv_puts(servers: list[ClusterAgent], seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    stop_at = time.monotonic() + seconds
    conns: list[_Conn] = []
    futures: list[asyncio.Future[int]] = []
    value = b"x" * 100
    started = time.monotonic()
    for i in range(IN_FLIGHT):
        server = servers[i % len(servers)]
        requests = [
            f"PUT /v1/kv/bench/c{i}/k{j} HTTP/1.1\r\nHost: {server.ip}\r\n"
            f"Content-Length: {len(value)}\r\n\r\n".encode()
            + value
            for j in range(16)
        ]
        fut: asyncio.Future[int] = loop.create_future()
        futures.append(fut)
        _, conn = await loop.create_connection(
            lambda r=requests, f=fut: _Conn(r, stop_at, f), server.ip, 8500
        )
        conns.append(conn)
    await asyncio.gather(*futures)
    elapsed = time.monotonic() - started
    total = sum(c.count for c in conns)
    return {"puts_per_s": total / elapsed, "errors": sum(c.errors for c in conns)}


async def kv_side_by_side(servers: list[ClusterAgent], args: argparse.Namespace) -> dict[str, Any]:
    """Raw etcd and Steppe KV in alternating rounds, compared by their medians: on a
    shared VM either figure alone swings by half between minutes, and measuring one
    after the other would put that swing into the ratio."""
    raw_rounds: list[float] = []
    steppe_rounds: list[float] = []
    errors = 0
    for _ in range(args.kv_rounds):
        raw_rounds.append(
            await etcd_raw.measure_raw_puts(
                f"{servers[0].ip}:8303", total=args.puts // args.kv_rounds
            )
        )
        kv = await steppe_kv_puts(servers, args.seconds / args.kv_rounds)
        steppe_rounds.append(kv["puts_per_s"])
        errors += kv["errors"]
    raw, steppe = statistics.median(raw_rounds), statistics.median(steppe_rounds)
    return {
        "raw_etcd_puts_per_s": round(raw),
        "steppe_kv_puts_per_s": round(steppe),
        "ratio": round(steppe / raw, 2),
        "rounds": [
            {"raw_etcd": round(r), "steppe_kv": round(k)}
            for r, k in zip(raw_rounds, steppe_rounds, strict=True)
        ],
        "errors": errors,
        "in_flight": IN_FLIGHT,
    }


# placements ---------------------------------------------------------------------------
class SimulatedNodes:
    """Registers nodes over RPC, as client agents do, and keeps each heartbeating within
    the TTL the servers gave it (the TTL grows as nodes join, as in Nomad)."""

    def __init__(self, servers: list[ClusterAgent], nodes: list[Node]) -> None:
        self.api = RemoteServerAPI([s.rpc_addr for s in servers], call_timeout=30)
        self.nodes = nodes
        self.ttl = 10.0
        self._due: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _register(self, node: Node) -> float:
        ttl = await self.api.register_node(node)
        self._due[node.id] = time.monotonic() + ttl / 2
        return ttl

    async def register(self) -> float:
        started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())
        ttls = await _bounded([lambda n=n: self._register(n) for n in self.nodes], 64)
        self.ttl = max(ttls)
        return len(self.nodes) / (time.monotonic() - started)

    async def _beat(self, node_id: str) -> float:
        ttl = await self.api.heartbeat(node_id)
        self._due[node_id] = time.monotonic() + ttl / 2
        return ttl

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            due = [n for n, at in list(self._due.items()) if at <= now]
            await _bounded([lambda n=n: self._beat(n) for n in due], 64, tolerant=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.api.close()


async def _bounded(
    calls: list[Callable[[], Awaitable[Any]]], limit: int, tolerant: bool = False
) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            try:
                return await call()
            except Exception:
                if not tolerant:
                    raise
                return None

    return await asyncio.gather(*(one(c) for c in calls))


async def count_allocs(etcd: aetcd.Client, prefix: bytes) -> int:
    """A count-only range. etcd still walks every key for it (11 ms of its CPU at
    40,000 keys), so it is asked only every ``COUNT_EVERY`` seconds."""
    request = rpc.RangeRequest(key=prefix, range_end=prefix_range_end(prefix), count_only=True)
    response = await etcd.kvstub.Range(request, timeout=30)
    return int(response.count)


async def store_revision(etcd: aetcd.Client) -> int:
    """The store's current revision, from the header of a one-key range: cheap enough
    to ask every 20 ms however many keys there are."""
    response = await etcd.kvstub.Range(rpc.RangeRequest(key=b"\0"), timeout=30)
    return int(response.header.revision)


async def newest_revision(etcd: aetcd.Client, prefix: bytes) -> int:
    """The highest mod revision under ``prefix``: the commit of the last placement."""
    request = rpc.RangeRequest(
        key=prefix,
        range_end=prefix_range_end(prefix),
        limit=1,
        keys_only=True,
        sort_order=rpc.RangeRequest.DESCEND,
        sort_target=rpc.RangeRequest.MOD,
    )
    response = await etcd.kvstub.Range(request, timeout=30)
    return int(response.kvs[0].mod_revision) if response.kvs else 0


async def placed_by(
    etcd: aetcd.Client, prefix: bytes, want: int, deadline: float
) -> tuple[int, float]:
    """How many allocations were placed, and when the last of them committed.

    Polls the store's revision every 20 ms, noting when each was first seen; counts
    allocations every ``COUNT_EVERY`` s until all are there; then takes the time the
    last allocation's revision was first seen. Counting every 20 ms instead (as this
    bench once did) cost etcd half a core by the end of a 50,000-allocation fill,
    taken from the servers being measured."""
    seen: list[tuple[int, float]] = []
    placed, next_count = 0, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        if time.monotonic() >= next_count:
            placed = await count_allocs(etcd, prefix)
            next_count = time.monotonic() + COUNT_EVERY
        revision = await store_revision(etcd)  # after the count: covers all it saw
        if not seen or revision != seen[-1][0]:
            seen.append((revision, time.monotonic()))
        if placed >= want:
            break
    last = await newest_revision(etcd, prefix)
    return placed, next(at for revision, at in seen if revision >= last)


def _cpu_ticks() -> list[int]:
    """The machine's CPU time so far (/proc/stat): user, nice, system, idle, iowait,
    irq, softirq, steal."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def cpu_share(before: list[int], after: list[int]) -> dict[str, float]:
    """How busy the machine was in between, and how much of its time the hypervisor
    took for other guests (steal): on a shared VM that swings the figures by half."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d) or 1
    busy = d[0] + d[1] + d[2] + d[5] + d[6]
    return {"busy_pct": round(100 * busy / total, 1), "steal_pct": round(100 * d[7] / total, 1)}


async def _until_evals_done(server: ClusterAgent) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            async with http.get(f"{server.http}/v1/evaluations") as resp:
                evals = await resp.json()
            if evals and all(e["Status"] != "pending" for e in evals):
                return
            await asyncio.sleep(0.1)
    raise TimeoutError("evaluations still pending after 60 s")


async def placements(servers: list[ClusterAgent], n_nodes: int, n_jobs: int) -> dict[str, Any]:
    sim = SimulatedNodes(servers, scheduler_bench.sim_nodes(n_nodes))
    etcd = aetcd.Client(host=servers[0].ip, port=4649, timeout=30)
    try:
        await etcd.connect()
        registered_per_s = await sim.register()
        prefix = Keys(root="/steppe/region/eu/").alloc("").encode()
        want = n_jobs * scheduler_bench.COUNT
        jobs = scheduler_bench.sim_jobs(n_jobs)
        started = time.monotonic()
        ticks = _cpu_ticks()
        async with aiohttp.ClientSession() as http:

            async def submit(i: int, job: Job) -> None:
                url = f"{servers[i % len(servers)].http}/v1/jobs"
                body = b'{"Job": ' + to_json(job) + b"}"
                async with http.put(url, data=body) as resp:
                    resp.raise_for_status()

            await _bounded([lambda i=i, j=j: submit(i, j) for i, j in enumerate(jobs)], SUBMITTERS)
        registered = time.monotonic() - started
        placed, done_at = await placed_by(etcd, prefix, want, started + 300)
        elapsed = done_at - started
        cpu = cpu_share(ticks, _cpu_ticks())
        # every evaluation has been processed once the last one is; then nothing more
        # may be placed (more than ``want`` would be a group over its count)
        await _until_evals_done(servers[0])
        settled = await count_allocs(etcd, prefix)
        if settled != want:
            raise AssertionError(f"{settled} allocations for {want} wanted")
        return {
            "nodes": n_nodes,
            "node_registrations_per_s": round(registered_per_s),
            "heartbeat_ttl_s": round(sim.ttl, 1),
            "jobs": n_jobs,
            "wanted": want,
            "placed": placed,
            "job_registration_seconds": round(registered, 2),
            "seconds": round(elapsed, 2),
            "placements_per_s": round(placed / elapsed) if elapsed > 0 else 0,
            "cpu": cpu,
        }
    finally:
        await etcd.close()
        await sim.close()


# failover -----------------------------------------------------------------------------
async def _first_success(
    attempt: Callable[[aiohttp.ClientSession], Awaitable[bool]], since: float
) -> float:
    """Starts an attempt every 20 ms until one succeeds; seconds from ``since`` to the
    first acknowledged one (a slow attempt does not hide a quicker later one)."""
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def one(http: aiohttp.ClientSession) -> None:
        try:
            if await attempt(http) and not done.done():
                done.set_result(time.monotonic() - since)
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass

    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while not done.done():
            tasks.append(asyncio.ensure_future(one(http)))
            await asyncio.wait([done], timeout=0.02)
            if time.monotonic() - since > 60:
                raise TimeoutError("no write committed within 60 s of the kill")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return done.result()


async def failover_once(cluster: Cluster, job: dict[str, Any], run: int) -> dict[str, Any]:
    leader = await asyncio.to_thread(cluster.wait_leader)
    survivor = next(s for s in cluster.servers if s is not leader)
    others = [s for s in cluster.servers if s is not leader]
    counter = iter(range(1_000_000))

    async def kv(http: aiohttp.ClientSession) -> bool:
        url = f"{survivor.catalog}/v1/kv/failover/r{run}-{next(counter)}"
        async with http.put(url, data=b"x") as resp:
            return resp.status == 200 and (await resp.read()).strip() == b"true"

    async def register(http: aiohttp.ClientSession) -> bool:
        body = json.dumps({"Job": {**job, "ID": f"fo-{run}", "Name": f"fo-{run}"}})
        async with http.put(f"{survivor.http}/v1/jobs", data=body) as resp:
            return resp.status == 200

    async def new_leader(http: aiohttp.ClientSession) -> bool:
        async with http.get(f"{others[1].http}/v1/status/leader") as resp:
            answer = await resp.json() if resp.status == 200 else None
        return bool(answer) and answer != leader.rpc_addr

    killed = time.monotonic()
    leader.kill(signal.SIGKILL)
    figures = await asyncio.gather(
        _first_success(kv, killed), _first_success(register, killed),
        _first_success(new_leader, killed),
    )  # fmt: skip
    cluster.start([leader])
    await asyncio.to_thread(cluster.wait_ready)
    return dict(zip(("kv_put", "job_register", "new_leader"), figures, strict=True))


async def failover(cluster: Cluster, runs: int) -> dict[str, Any]:
    job = await asyncio.to_thread(_failover_job, cluster.servers[0])
    rows = [await failover_once(cluster, job, run) for run in range(runs)]
    medians = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    return {"runs": [{k: round(v, 3) for k, v in r.items()} for r in rows], "median": medians}


def _failover_job(server: ClusterAgent) -> dict[str, Any]:
    from tests.cluster.workload import job_json

    return job_json(server, "fo", 0)


# main ---------------------------------------------------------------------------------
async def measure(part: str, cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    servers = cluster.servers
    if part == "kv":
        kv = await kv_side_by_side(servers, args)
        print(f"KV        raw etcd {kv['raw_etcd_puts_per_s']:8.0f} puts/s | Steppe KV "
              f"{kv['steppe_kv_puts_per_s']:8.0f} PUT/s ({kv['ratio']:.2f}x, target >= 0.8x; "
              f"medians of {args.kv_rounds} alternating rounds; {kv['errors']} errors)",
              flush=True)  # fmt: skip
        return kv
    if part == "failover":
        fo = await failover(cluster, args.runs)
        m = fo["median"]
        print(f"failover  median to first KV PUT {m['kv_put']:.3f}s, job register "
              f"{m['job_register']:.3f}s, new leader {m['new_leader']:.3f}s (target <= 1.5 s)",
              flush=True)  # fmt: skip
        return fo
    place = await placements(servers, args.nodes, args.jobs)
    print(f"placement {place['placed']} of {place['wanted']} on {place['nodes']} nodes in "
          f"{place['seconds']}s: {place['placements_per_s']}/s (target >= 2000/s; "
          f"machine {place['cpu']['busy_pct']}% busy, {place['cpu']['steal_pct']}% "
          "stolen by the hypervisor)",
          flush=True)  # fmt: skip
    return place


def measure_on_fresh_cluster(part: str, args: argparse.Namespace) -> dict[str, Any]:
    """Each measure gets a newly formed cluster, so none inherits another's leftovers
    (five leader kills' restarted members, 30,000 KV keys, 5,000 nodes timing out)."""
    workdir = Path(tempfile.mkdtemp(prefix="steppe-bench-cluster-"))
    cluster = new_cluster(workdir, servers=3, clients=0)
    try:
        cluster.start()
        cluster.wait_ready()
        return asyncio.run(measure(part, cluster, args))
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--puts", type=int, default=30_000, help="raw etcd puts, all rounds")
    parser.add_argument("--seconds", type=float, default=12.0, help="Steppe KV, all rounds")
    parser.add_argument("--kv-rounds", type=int, default=5)
    parser.add_argument(
        "--parts", type=lambda v: v.split(","), default=PARTS,
        help="comma-separated subset of kv,failover,placements; results are written "
        "only when all run",
    )  # fmt: skip
    args = parser.parse_args()
    results = {part: measure_on_fresh_cluster(part, args) for part in PARTS if part in args.parts}
    if set(args.parts) != set(PARTS):
        return
    RESULTS.parent.mkdir(exist_ok=True)
    results["machine"] = {"cores": __import__("os").cpu_count()}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
