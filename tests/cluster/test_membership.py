"""Servers coming and going as separate processes: a fourth server joins a formed
3-server cluster and becomes a member of both its stores; with ``leave_on_terminate``
it leaves them both on SIGTERM (not on SIGINT), and rejoins when started again. The
scheduler leader keeps the stores' etcd leaders on other machines."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cluster.workload import get_kv, job_json, register
from tests.support.cluster import Cluster, ClusterAgent, new_cluster, request, running_cluster
from tests.support.waiting import wait_until

from steppe.etcdmember import move_leader

pytestmark = pytest.mark.timeout(240)
ETCD_REGION, ETCD_DC = 4649, 8303
"""Client ports of a server's etcd members (region store, datacenter store)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster(servers=3, clients=0) as c:
        yield c


def raft_peers(server: ClusterAgent) -> set[str]:
    """The region store's voters, as ``operator raft list-peers`` prints them."""
    rows = server.cli("operator", "raft", "list-peers").stdout.splitlines()[1:]
    return {row.split()[0] for row in rows if row.split()[4] == "true"}


def server_members(server: ClusterAgent) -> set[str]:
    rows = server.cli("server", "members").stdout.splitlines()[1:]
    return {row.split()[0] for row in rows if row.split()[3] == "alive"}


def catalog_peers(server: ClusterAgent) -> set[str]:
    """The datacenter store's voters, as Consul's ``/v1/status/peers`` lists them."""
    peers = json.loads(request(f"{server.catalog}/v1/status/peers", timeout=5))
    return {p.rpartition(":")[0] for p in peers}


def lan_members(server: ClusterAgent) -> set[tuple[str, str, str]]:
    """``members`` (Consul's LAN view) through the server's catalog API."""
    rows = server.cli("members", "-http-addr", server.catalog).stdout.splitlines()[1:]
    return {(row.split()[0], row.split()[2], row.split()[3]) for row in rows}


def dig_a(server: ClusterAgent, name: str) -> set[str]:
    out = subprocess.run(
        ["dig", "+short", "+time=2", "+tries=1", f"@{server.ip}", "-p", "8600", name, "A"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


def test_the_scheduler_leader_hands_etcd_leadership_to_other_machines(cluster: Cluster) -> None:
    """So that losing one machine costs one election, not an etcd election followed by
    the scheduler leader's lease running out again: we make the scheduler leader's
    members lead both stores, and it hands that leadership on."""
    leader = cluster.wait_leader()
    stores = [(leader.http, ETCD_REGION), (leader.catalog, ETCD_DC)]
    for api, client_port in stores:
        servers = store_servers(api)
        current = next(s["Node"] for s in servers if s["Leader"])
        if current != leader.name:
            target = next(int(s["ID"], 16) for s in servers if s["Node"] == leader.name)
            endpoint = f"{cluster.servers[int(current[1:]) - 1].ip}:{client_port}"
            asyncio.run(move_leader(endpoint, target))
    for api, _ in stores:
        wait_until(
            lambda a=api: any(s["Leader"] and s["Node"] != leader.name for s in store_servers(a)),
            what=f"etcd leadership of {api}'s store handed on",
        )


def store_servers(api: str) -> list[dict[str, object]]:
    servers: list[dict[str, object]] = json.loads(
        request(f"{api}/v1/operator/raft/configuration", timeout=5)
    )["Servers"]
    return servers


def test_a_later_server_joins_both_stores_and_serves(cluster: Cluster) -> None:
    first = cluster.servers[0]
    s4 = cluster.add_server(extra_hcl="leave_on_terminate = true\n")
    cluster.start([s4])
    names = {"s1", "s2", "s3", "s4"}
    wait_until(lambda: raft_peers(first) == names, timeout=60, what="s4 among the region's peers")
    wait_until(
        lambda: catalog_peers(first) == {s.ip for s in cluster.servers},
        timeout=60,
        what="s4 among the datacenter's peers",
    )
    wait_until(
        lambda: server_members(s4) == {f"{n}.eu" for n in names}, what="s4 in server members"
    )
    wait_until(
        lambda: lan_members(first) == {(f"s{i}", "alive", "server") for i in range(1, 5)},
        what="s4 among the LAN members",
    )
    wait_until(
        lambda: dig_a(first, "consul.service.consul") == {s.ip for s in cluster.servers},
        what="every server under consul.service.consul",
    )
    leaders = {s.get("/v1/status/leader") for s in cluster.servers}
    assert len(leaders) == 1 and leaders.pop() in {s.rpc_addr for s in cluster.servers}

    register(s4, job_json(s4, "via-s4", 0))
    assert wait_until(lambda: first.get("/v1/job/via-s4")["ID"] == "via-s4")
    request(f"{s4.catalog}/v1/kv/joined", "PUT", b"s4")
    assert get_kv(first, "joined") == "s4"


def test_a_leaving_server_is_removed_and_can_come_back(cluster: Cluster) -> None:
    first, s4 = cluster.servers[0], cluster.servers[3]
    three = {"s1", "s2", "s3"}
    s4.kill(signal.SIGTERM)
    assert s4.proc is not None and s4.proc.returncode == 0, s4.log()[-3000:]
    assert raft_peers(first) == three
    assert catalog_peers(first) == {s.ip for s in cluster.servers[:3]}
    wait_until(lambda: server_members(first) == {f"{n}.eu" for n in three}, what="s4 gone")
    assert lan_members(first) == {(n, "alive", "server") for n in three}
    request(f"{first.catalog}/v1/kv/after-leave", "PUT", b"2 of 3 is a quorum again")

    cluster.start([s4])
    wait_until(
        lambda: raft_peers(first) == three | {"s4"}, timeout=60, what="s4 back among the peers"
    )
    wait_until(lambda: catalog_peers(first) == {s.ip for s in cluster.servers}, timeout=60)
    assert wait_until(lambda: get_kv(s4, "after-leave"), timeout=30) == "2 of 3 is a quorum again"

    s4.kill(signal.SIGINT)  # only leave_on_terminate is set: an interrupt stays a member
    assert s4.proc is not None and s4.proc.returncode == 0, s4.log()[-3000:]
    assert raft_peers(first) == three | {"s4"}
    assert catalog_peers(first) == {s.ip for s in cluster.servers}


def test_servers_without_retry_join_form_when_told_to_join(tmp_path: Path) -> None:
    """The HA seed's playbook: the servers know of no one until ``consul join`` and
    ``nomad server-join`` name the first server (a bare host) on the others."""
    cluster = new_cluster(tmp_path, servers=3, clients=0, retry_join=False)
    try:
        cluster.start()
        s1 = cluster.servers[0]
        for server in cluster.servers[1:]:  # the catalog first, as in the playbook
            wait_until(
                lambda s=server: (
                    s.cli("join", "-http-addr", s.catalog, s1.ip, check=False).returncode == 0
                ),
                what=f"join on {server.name}",
            )
        for server in cluster.servers[1:]:
            wait_until(
                lambda s=server: s.cli("server-join", s1.ip, check=False).returncode == 0,
                timeout=60,
                what=f"server-join on {server.name}",
            )
        cluster.wait_ready()
        bad = s1.cli("server-join", "s2:notaport", check=False)
        assert bad.returncode == 1 and "'s2:notaport' is not host:port" in bad.stderr
        assert raft_peers(s1) == {"s1", "s2", "s3"}
        assert catalog_peers(cluster.servers[2]) == {s.ip for s in cluster.servers}
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.cleanup()
