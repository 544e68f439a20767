"""Scheduler placements per second, in-process: simulated nodes, jobs of 100 instances.

Each scenario registers ``allocs / 100`` service jobs (count 100, 100 MHz / 128 MB and one
dynamic port per instance, over two datacenters so the default datacenter spread is in
play) on ``nodes`` simulated nodes (8000 MHz / 16 GB), and processes one evaluation per
job through the real scheduler (``steppe.scheduler.process``) and the real plan check
(``evaluate_plan``). It runs each scenario twice:

- ``harness``: state in :class:`steppe.testing.harness.HarnessState` (plain dicts);
- ``store``: the real state store (``steppe.state.StateStore`` over ``MemoryBackend``),
  plans committed as the leader does (``evaluate_plan``, then one transaction per node
  share with a compare on its usage revision), evals registered and stored.

Single thread, so one core; times are the process's CPU time (``time.process_time``), so
other work on the machine does not skew them; wall time is reported alongside. After each
run it checks that no node is oversubscribed.

Usage: ``python bench/scheduler.py [--quick] [--profile]``; prints a table and writes
``bench/results/scheduler.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import platform
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from steppe.backend import MemoryBackend
from steppe.scheduler import (
    SubmitResult,
    allocs_fit,
    evaluate_plan,
    new_id,
    process,
    process_async,
)
from steppe.server import Endpoints, Leader
from steppe.state import SCHEDULER_TABLES, Keys, StateSnapshot, StateStore, writes
from steppe.structs import NS, Evaluation, Job, NetworkResource, Node, NodeResources, Plan, Port
from steppe.testing import mock
from steppe.testing.harness import HarnessState

RESULTS = Path(__file__).parent / "results" / "scheduler.json"
SCENARIOS = [(1_000, 10_000), (5_000, 50_000)]
QUICK = [(200, 2_000), (1_000, 10_000)]
COUNT = 100
TARGET = 2_000
NOW = 1_700_000_000 * NS


def sim_nodes(n: int) -> list[Node]:
    return [
        mock.node(
            datacenter=f"dc{i % 2 + 1}",
            resources=NodeResources(
                cpu=8000,
                memory_mb=16384,
                disk_mb=100_000,
                networks=(NetworkResource(device="eth0", ip=f"10.1.{i >> 8}.{i & 255}"),),
            ),
        )
        for i in range(n)
    ]


def sim_jobs(n: int) -> list[Job]:
    task = mock.task(
        resources=msgspec.structs.replace(mock.task().resources, cpu=100, memory_mb=128)
    )
    group = mock.group(
        count=COUNT,
        tasks=(task,),
        networks=(NetworkResource(dynamic_ports=(Port(label="http"),)),),
    )
    return [
        mock.job(id=f"bench-{i}", datacenters=("dc1", "dc2"), task_groups=(group,))
        for i in range(n)
    ]


def check_no_oversubscription(nodes: list[Node], allocs_by_node: Callable[[str], list[Any]]) -> int:
    placed = 0
    for node in nodes:
        live = [a for a in allocs_by_node(node.id) if not a.terminal()]
        fits, why = allocs_fit(node, live)
        assert fits, f"{node.name} oversubscribed ({why})"
        placed += len(live)
    return placed


def run_harness(n_nodes: int, n_allocs: int) -> dict[str, Any]:
    nodes = sim_nodes(n_nodes)
    state = HarnessState()
    for node in nodes:
        state.upsert_node(node)
    ids = new_id
    plan_time = 0.0

    def submit(plan: Plan) -> SubmitResult:
        nonlocal plan_time
        started = time.process_time()
        result = evaluate_plan(state, plan)
        state.apply(result)
        plan_time += time.process_time() - started
        return result, (state if result.refresh_index else None)

    wall = time.perf_counter()
    started = time.process_time()
    for job in sim_jobs(n_allocs // COUNT):
        job = state.upsert_job(job)
        ev = mock.eval_for(job)
        state.upsert_evals([ev])
        result = process(state, ev, NOW, submit, ids)
        state.upsert_evals([result.eval, *result.new_evals])
    elapsed = time.process_time() - started
    wall = time.perf_counter() - wall
    placed = check_no_oversubscription(nodes, state.allocs_by_node)
    return _figures("harness", n_nodes, placed, elapsed, wall, plan_time)


async def run_store(n_nodes: int, n_allocs: int) -> dict[str, Any]:
    nodes = sim_nodes(n_nodes)
    store = StateStore(MemoryBackend(), SCHEDULER_TABLES)
    await store.start()
    keys = Keys()
    for node in nodes:
        await store.commit(writes.upsert_node(keys, node))
    ids = new_id
    plan_time = 0.0
    leader = Leader(store, Endpoints(store, "global"))

    async def apply_plan(plan: Plan) -> tuple[Any, StateSnapshot | None]:
        """The leader's own plan applier (re-check, then per-node compare-and-set)."""
        nonlocal plan_time
        started = time.process_time()
        answer = await leader.apply_plan(plan)
        plan_time += time.process_time() - started
        return answer

    wall = time.perf_counter()
    started = time.process_time()
    for job in sim_jobs(n_allocs // COUNT):
        ev = Evaluation(
            id=ids(), type="service", triggered_by="job-register", job_id=job.id, priority=50
        )
        await store.commit(writes.register_job(keys, job, 0, [ev]))
        result = await process_async(store.snapshot(), ev, NOW, apply_plan, ids)
        await store.commit(writes.upsert_evals(keys, [result.eval, *result.new_evals]))
    elapsed = time.process_time() - started
    wall = time.perf_counter() - wall
    placed = check_no_oversubscription(nodes, store.snapshot().allocs_by_node)
    await store.stop()
    return _figures("store", n_nodes, placed, elapsed, wall, plan_time)


def _figures(
    mode: str, n_nodes: int, placed: int, elapsed: float, wall: float, plan_time: float
) -> dict[str, Any]:
    return {
        "state": mode,
        "nodes": n_nodes,
        "placed": placed,
        "cpu_seconds": round(elapsed, 3),
        "wall_seconds": round(wall, 3),
        "placements_per_s": round(placed / elapsed),
        "plan_apply_seconds": round(plan_time, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenarios")
    parser.add_argument("--profile", action="store_true", help="cProfile the runs")
    args = parser.parse_args()
    scenarios = QUICK if args.quick else SCENARIOS
    rows: list[dict[str, Any]] = []
    for n_nodes, n_allocs in scenarios:
        for mode in ("harness", "store"):
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            if mode == "harness":
                rows.append(run_harness(n_nodes, n_allocs))
            else:
                rows.append(asyncio.run(run_store(n_nodes, n_allocs)))
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    head = ("state", "nodes", "placed", "cpu s", "wall s", "placements/s", "plan apply s")
    print("{:<8} {:>6} {:>7} {:>8} {:>8} {:>13} {:>13}".format(*head))
    for r in rows:
        print(
            f"{r['state']:<8} {r['nodes']:>6} {r['placed']:>7} {r['cpu_seconds']:>8} "
            f"{r['wall_seconds']:>8} "
            f"{r['placements_per_s']:>13} {r['plan_apply_seconds']:>13}"
        )
    for r in rows:
        if r["nodes"] == max(n for n, _ in scenarios):
            verdict = "met" if r["placements_per_s"] >= TARGET else "NOT met"
            print(f"target >= {TARGET} placements/s at {r['nodes']} nodes, {r['state']}: {verdict}")
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "benchmark": "scheduler placements per second",
                    "instances_per_job": COUNT,
                    "target_placements_per_s": TARGET,
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "results": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
