"""What the cluster tests do to a cluster while they break it: register jobs, write KV
entries, and watch every node's allocations for oversubscription throughout."""

from __future__ import annotations

import copy
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.support.cluster import Cluster, ClusterAgent, HTTPFailure, get_json, request

TERMINAL_CLIENT = ("complete", "failed", "lost")
CPU, MEMORY = 150, 32

JOB_HCL = """
job "JOBID" {
  datacenters = ["ams2", "lon1"]
  group "g" {
    count = COUNT
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }
      resources {
        cpu    = CPU
        memory = MEMORY
      }
    }
  }
}
"""


def job_json(server: ClusterAgent, job_id: str, count: int) -> dict[str, Any]:
    hcl = JOB_HCL.replace("JOBID", job_id).replace("COUNT", str(count))
    hcl = hcl.replace("CPU", str(CPU)).replace("MEMORY", str(MEMORY))
    body = json.dumps({"JobHCL": hcl}).encode()
    job: dict[str, Any] = json.loads(request(server.http + "/v1/jobs/parse", "POST", body))
    return job


def register(server: ClusterAgent, job: dict[str, Any]) -> None:
    request(server.http + "/v1/jobs", "PUT", json.dumps({"Job": job}).encode(), timeout=10)


def live(alloc: dict[str, Any]) -> bool:
    return alloc["ClientStatus"] not in TERMINAL_CLIENT and alloc["DesiredStatus"] == "run"


def running_by_group(allocs: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for a in allocs:
        if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run":
            counts[(a["JobID"], a["TaskGroup"])] += 1
    return counts


def any_get(cluster: Cluster, path: str) -> Any:
    """The first live server's answer."""
    last: Exception | None = None
    for server in cluster.alive_servers():
        try:
            return server.get(path, timeout=5)
        except (OSError, ValueError, HTTPFailure) as exc:
            last = exc
    raise AssertionError(f"no server answered {path}") from last


@dataclass
class Writers:
    """Job registrations (granted in batches by the test) and KV writes (unbounded)
    through the given servers, keeping what each server acknowledged."""

    cluster: Cluster
    through: list[ClusterAgent]
    template: dict[str, Any]
    acked_jobs: list[str] = field(default_factory=list)
    acked_kv: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _grants: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _threads: list[threading.Thread] = field(default_factory=list)
    _next_job: int = 0

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._jobs, daemon=True),
            threading.Thread(target=self._kv, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def grant_jobs(self, n: int) -> None:
        self._grants.release(n)

    def finish(self) -> None:
        self.stop.set()
        self._grants.release(1000)
        for t in self._threads:
            t.join(timeout=60)

    def _server(self, i: int) -> ClusterAgent:
        alive = [s for s in self.through if s.alive] or self.through
        return alive[i % len(alive)]

    def _jobs(self) -> None:
        attempt = 0
        while True:
            self._grants.acquire()
            if self.stop.is_set():
                return
            job_id = f"stream-{self._next_job}"
            self._next_job += 1
            job = copy.deepcopy(self.template)
            job["ID"] = job["Name"] = job_id
            while not self.stop.is_set():
                attempt += 1
                try:
                    register(self._server(attempt), job)
                    self.acked_jobs.append(job_id)
                    break
                except (OSError, HTTPFailure) as exc:
                    self.failures.append(f"job {job_id}: {exc}")

    def _kv(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            key, value = f"stream/k{i}", f"v{i}"
            try:
                url = f"{self._server(i).catalog}/v1/kv/{key}"
                if request(url, "PUT", value.encode(), timeout=5).strip() == b"true":
                    self.acked_kv[key] = value
            except (OSError, HTTPFailure) as exc:
                self.failures.append(f"kv {key}: {exc}")


class OversubscriptionMonitor:
    """Polls allocations and nodes through any live server and records every moment a
    node's live allocations asked for more than it has."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.violations: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._capacity: dict[str, tuple[int, int]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OversubscriptionMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.check_once()
            except AssertionError:
                continue  # no server answered this round

    def check_once(self) -> None:
        allocs = any_get(self.cluster, "/v1/allocations")
        used: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for alloc in allocs:
            if live(alloc):
                used[alloc["NodeID"]][0] += CPU
                used[alloc["NodeID"]][1] += MEMORY
        for node_id, (cpu, mem) in used.items():
            have_cpu, have_mem = self._node_capacity(node_id)
            if cpu > have_cpu or mem > have_mem:
                self.violations.append(
                    f"node {node_id}: {cpu} MHz / {mem} MB asked, {have_cpu} / {have_mem} had"
                )
        self.polls += 1

    def _node_capacity(self, node_id: str) -> tuple[int, int]:
        if node_id not in self._capacity:
            node = any_get(self.cluster, f"/v1/node/{node_id}")
            res, reserved = node["Resources"], node.get("Reserved") or {}
            self._capacity[node_id] = (
                res["CPU"] - reserved.get("CPU", 0),
                res["MemoryMB"] - reserved.get("MemoryMB", 0),
            )
        return self._capacity[node_id]


def get_kv(server: ClusterAgent, key: str) -> str | None:
    try:
        return request(f"{server.catalog}/v1/kv/{key}?consistent&raw", timeout=5).decode()
    except HTTPFailure as exc:
        if exc.status == 404:
            return None
        raise


def all_kv(server: ClusterAgent) -> dict[str, str]:
    import base64

    try:
        rows = get_json(f"{server.catalog}/v1/kv/?recurse&consistent", timeout=10)
    except HTTPFailure as exc:
        if exc.status == 404:
            return {}
        raise
    return {r["Key"]: base64.b64decode(r["Value"] or "").decode() for r in rows}
