"""Three servers and two clients as separate processes on their own loopback addresses,
broken the ways machines break: the scheduler leader killed during writes, a client
killed, everything restarted. The tests run in order on one cluster, each leaving it
whole again for the next."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from tests.cluster.workload import (
    OversubscriptionMonitor,
    Writers,
    all_kv,
    any_get,
    get_kv,
    job_json,
    live,
    register,
    running_by_group,
)
from tests.support.cluster import Cluster, ClusterAgent, processes_under, request, running_cluster
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster(servers=3, clients=2) as c:
        yield c


def _leader_rows(server: ClusterAgent) -> list[str]:
    out = server.cli("server", "members").stdout.splitlines()[1:]
    return [row for row in out if row.split()[4] == "true"]


def test_three_servers_elect_one_leader_over_three_voters(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    for server in cluster.servers:
        rows = wait_until(lambda s=server: len(_leader_rows(s)) == 1 and _leader_rows(s))
        assert rows[0].split()[0] == f"{leader.name}.eu"
    peers = cluster.servers[0].cli("operator", "raft", "list-peers").stdout.splitlines()[1:]
    assert sorted(p.split()[0] for p in peers) == ["s1", "s2", "s3"]
    assert all(p.split()[4] == "true" for p in peers)
    assert sum(p.split()[3] == "leader" for p in peers) == 1
    nodes = cluster.servers[1].cli("node", "status").stdout
    assert "c1" in nodes and "c2" in nodes


def _settled(cluster: Cluster, counts: dict[str, int]) -> dict[tuple[str, str], int] | None:
    """Every job's group runs exactly ``count`` allocations and none is on its way."""
    allocs = any_get(cluster, "/v1/allocations")
    running = running_by_group(allocs)
    if any(a["ClientStatus"] == "pending" and live(a) for a in allocs):
        return None
    if any(running.get((job, "g"), 0) != n for job, n in counts.items()):
        return None
    return running


def test_leader_killed_during_job_runs_and_kv_writes(cluster: Cluster) -> None:
    old = cluster.wait_leader()
    survivors = [s for s in cluster.servers if s is not old]
    writers = Writers(cluster, survivors, job_json(survivors[0], "template", 2))
    with OversubscriptionMonitor(cluster) as monitor:
        writers.start()
        try:
            writers.grant_jobs(4)
            wait_until(lambda: len(writers.acked_jobs) >= 4 and len(writers.acked_kv) >= 20)
            writers.grant_jobs(4)  # in flight while the leader dies
            old.kill(signal.SIGKILL)
            new = wait_until(
                lambda: cluster.leader(survivors), timeout=15, what="a new scheduler leader"
            )
            assert new is not old
            kv_at_new_leader = len(writers.acked_kv)
            writers.grant_jobs(4)
            wait_until(
                lambda: (
                    len(writers.acked_jobs) == 12 and len(writers.acked_kv) >= kv_at_new_leader + 20
                ),
                timeout=60,
                what="writes after the failover",
            )
        finally:
            writers.finish()
        jobs = {j["ID"] for j in any_get(cluster, "/v1/jobs")}
        assert set(writers.acked_jobs) <= jobs
        for key, value in writers.acked_kv.items():
            assert get_kv(survivors[0], key) == value, key
        counts = dict.fromkeys(writers.acked_jobs, 2)
        running = wait_until(lambda: _settled(cluster, counts), timeout=60, what="jobs settled")
        assert all(n <= 2 for n in running.values())
        cluster.start([old])
        cluster.wait_ready()
        monitor.check_once()
    print(
        f"failover: {len(writers.acked_jobs)} jobs, {len(writers.acked_kv)} KV writes "
        f"acknowledged, {len(writers.failures)} failed attempts; {monitor.polls} polls"
    )
    assert monitor.polls > 0
    assert not monitor.violations, monitor.violations[:5]


def _node_id(cluster: Cluster, name: str) -> str:
    return str(next(n["ID"] for n in any_get(cluster, "/v1/nodes") if n["Name"] == name))


def test_killed_client_allocations_run_elsewhere(cluster: Cluster) -> None:
    victim, other = cluster.clients
    victim_id, other_id = _node_id(cluster, victim.name), _node_id(cluster, other.name)
    server = cluster.servers[0]
    # one node must be able to hold everything that ran on two: clear earlier tests' jobs
    for job in any_get(cluster, "/v1/jobs"):
        request(f"{server.http}/v1/job/{job['ID']}?purge=true", "DELETE", timeout=10)
    wait_until(
        lambda: not [a for a in any_get(cluster, "/v1/allocations") if live(a)],
        timeout=90,
        what="earlier jobs stopped",
    )
    register(server, {**job_json(server, "moving", 4), "ID": "moving", "Name": "moving"})
    allocs = wait_until(
        lambda: _settled(cluster, {"moving": 4}) and _allocs(cluster, "moving"),
        timeout=90,
        what="the job placed and running",
    )
    on_victim = [a for a in allocs if a["NodeID"] == victim_id and live(a)]
    before = {a["ID"] for a in allocs if a["NodeID"] == victim_id and live(a)}
    assert before, "the spread put none of the job on the victim node"
    with OversubscriptionMonitor(cluster) as monitor:
        victim.kill(signal.SIGKILL)

        seen: list[object] = []

        def replaced() -> bool:
            node = any_get(cluster, f"/v1/node/{victim_id}")
            allocs = _allocs(cluster, "moving")
            seen[:] = [
                node["Status"],
                [
                    (a["ID"][:8], a["NodeID"][:8], a["DesiredStatus"], a["ClientStatus"])
                    for a in allocs
                ],
            ]
            lost = {a["ID"] for a in allocs if a["ClientStatus"] == "lost"}
            running = [a for a in allocs if a["ClientStatus"] == "running" and live(a)]
            return (
                node["Status"] == "down"
                and before <= lost
                and len(running) == 4
                and all(a["NodeID"] == other_id for a in running if a["ID"] not in before)
            )

        try:
            wait_until(replaced, timeout=90, what="the dead client's allocations replaced")
        except AssertionError as exc:
            evals = [
                (e["ID"][:8], e["TriggeredBy"], e["Status"], e["StatusDescription"], e["WaitUntil"])
                for e in _evals(cluster, "moving")
            ]
            raise AssertionError(f"last seen (node, allocations): {seen}; evals: {evals}") from exc
        assert len(on_victim) == len(before)
        cluster.start([victim])
        cluster.wait_ready()
    assert not monitor.violations, monitor.violations[:5]


def _evals(cluster: Cluster, job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = any_get(cluster, f"/v1/job/{job}/evaluations")
    return result


def _allocs(cluster: Cluster, job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = any_get(cluster, f"/v1/job/{job}/allocations")
    return result


def _state(cluster: Cluster) -> dict[str, Any]:
    server = cluster.alive_servers()[0]
    jobs = {j["ID"]: j["Version"] for j in any_get(cluster, "/v1/jobs")}
    allocs = any_get(cluster, "/v1/allocations")
    running = {a["ID"]: a["NodeID"] for a in allocs if live(a) and a["ClientStatus"] == "running"}
    kv = all_kv(server)
    kv.pop("_ready", None)
    sessions = {s["ID"] for s in json.loads(request(f"{server.catalog}/v1/session/list"))}
    return {"jobs": jobs, "running": running, "kv": kv, "sessions": sessions}


def _task_pids(cluster: Cluster, running: dict[str, str]) -> dict[str, list[int]]:
    pids = {}
    for alloc_id in running:
        for client in cluster.clients:
            found = processes_under(client.data_dir / "alloc" / alloc_id)
            if found:
                pids[alloc_id] = sorted(found)
    return pids


def test_restart_everything_keeps_state_and_tasks(cluster: Cluster) -> None:
    catalog = cluster.servers[1].catalog
    body = json.dumps({"Name": "keeper", "TTL": "3600s"}).encode()
    session = json.loads(request(f"{catalog}/v1/session/create", "PUT", body))["ID"]
    assert request(f"{catalog}/v1/kv/locked?acquire={session}", "PUT", b"mine") == b"true"
    allocs = wait_until(
        lambda: _settled(cluster, {"moving": 4}) and _state(cluster),
        timeout=90,
        what="state settled before the restart",
    )
    before = _state(cluster)
    assert before["running"] and session in before["sessions"]
    pids = _task_pids(cluster, before["running"])
    assert set(pids) == set(before["running"]), "every running allocation has its task"
    del allocs

    cluster.stop_all(signal.SIGTERM)
    cluster.start()
    cluster.wait_ready()

    after = wait_until(
        lambda: (s := _state(cluster))["running"] == before["running"] and s,
        timeout=60,
        what="the same allocations running again",
    )
    assert after["jobs"] == before["jobs"]
    assert after["kv"] == before["kv"]
    assert session in after["sessions"]
    assert _task_pids(cluster, after["running"]) == pids
    lock = json.loads(request(f"{catalog}/v1/kv/locked"))
    assert lock[0]["Session"] == session
