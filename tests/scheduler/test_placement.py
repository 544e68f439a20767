"""Placement: bin-packing, spread of the seed job, constraints, ports, capacity."""

from __future__ import annotations

from collections import Counter

import msgspec

from steppe.scheduler import describe_failures
from steppe.structs import (
    EVAL_BLOCKED,
    EVAL_COMPLETE,
    Constraint,
    NetworkResource,
    Port,
    Resources,
)
from steppe.testing import mock
from steppe.testing.harness import Harness


def _register(h: Harness, job):  # type: ignore[no-untyped-def]
    job = h.state.upsert_job(job)
    return job, h.process(mock.eval_for(job))


def test_places_every_instance_with_resources_ports_and_metrics() -> None:
    h = Harness()
    for _ in range(10):
        h.state.upsert_node(mock.node())
    job, result = _register(h, mock.job())
    assert result.eval.status == EVAL_COMPLETE
    assert result.eval.queued_allocations == {"web": 0}
    assert len(h.plans) == 1
    allocs = h.running(job)
    assert sorted(a.name for a in allocs) == sorted(f"{job.id}.web[{i}]" for i in range(10))
    for alloc in allocs:
        node = h.state.node(alloc.node_id)
        assert node is not None and alloc.node_name == node.name
        assert alloc.client_status == "pending" and alloc.desired_status == "run"
        assert alloc.create_time == h.now and alloc.job_version == job.version
        res = alloc.allocated_resources
        assert res.tasks["web"].cpu.cpu_shares == 500
        assert res.tasks["web"].memory.memory_mb == 256
        labels = {p.label for p in res.shared.ports}
        assert labels == {"http", "admin"}
        for port in res.shared.ports:
            assert node.min_dynamic_port <= port.value <= node.max_dynamic_port
            assert port.host_ip == node.address
        assert alloc.metrics is not None and alloc.metrics.nodes_evaluated >= 2
        assert "binpack" in alloc.metrics.scores


def test_bin_packing_fills_the_fuller_node_first() -> None:
    h = Harness()
    empty = h.state.upsert_node(mock.node())
    busy = h.state.upsert_node(mock.node())
    filler = mock.job(task_groups=(mock.group(count=1, networks=()),))
    filler = h.state.upsert_job(filler)
    h.state.upsert_allocs(
        [
            mock.alloc(
                node_id=busy.id,
                job_id=filler.id,
                name=f"{filler.id}.web[0]",
                allocated_resources=mock.resources(cpu=2000, memory_mb=4096),
            )
        ]
    )
    job = mock.job(task_groups=(mock.group(count=1, networks=()),))
    job, _ = _register(h, job)
    (alloc,) = h.running(job)
    assert alloc.node_id == busy.id != empty.id


def test_seed_job_spreads_two_and_two_over_its_datacenters() -> None:
    h = Harness()
    ams = h.state.upsert_node(mock.node(datacenter="ams2"))
    lon = h.state.upsert_node(mock.node(datacenter="lon1"))
    job, result = _register(h, mock.nginx_job())
    assert result.eval.status == EVAL_COMPLETE
    per_node = Counter(a.node_id for a in h.running(job))
    assert per_node == {ams.id: 2, lon.id: 2}
    for alloc in h.running(job):
        (port,) = alloc.allocated_resources.shared.ports
        assert port.label == "web" and port.to == 80 and port.value >= 20000


def test_seed_job_spreads_over_datacenters_with_several_nodes_each() -> None:
    for seed in range(8):
        h = Harness()
        dcs = {}
        for dc in ("ams2", "lon1"):
            for _ in range(5):
                node = h.state.upsert_node(mock.node(datacenter=dc))
                dcs[node.id] = dc
        h.state.upsert_node(mock.node(datacenter="nyc1"))  # not in the job's datacenters
        job, _ = _register(h, msgspec.structs.replace(mock.nginx_job(), id=f"nginx-{seed}"))
        per_dc = Counter(dcs[a.node_id] for a in h.running(job))
        assert per_dc == {"ams2": 2, "lon1": 2}


def test_spread_targets_split_by_percent() -> None:
    from steppe.structs import Spread, SpreadTarget

    h = Harness()
    for dc in ("a", "b"):
        for _ in range(8):
            h.state.upsert_node(mock.node(datacenter=dc))
    spread = Spread(
        attribute="${node.datacenter}",
        weight=100,
        spread_target=(SpreadTarget(value="a", percent=75), SpreadTarget(value="b", percent=25)),
    )
    job = mock.job(datacenters=("a", "b"), spreads=(spread,))
    job = msgspec.structs.replace(job, task_groups=(mock.group(count=8),))
    job, _ = _register(h, job)
    per_dc = Counter(h.state.node(a.node_id).datacenter for a in h.running(job))  # type: ignore[union-attr]
    assert per_dc == {"a": 6, "b": 2}


def test_constraint_filtering_is_counted_and_described() -> None:
    h = Harness()
    for _ in range(2):
        h.state.upsert_node(mock.node())
    windows = Constraint(l_target="${attr.kernel.name}", r_target="windows", operand="=")
    job, result = _register(h, mock.job(constraints=(windows,)))
    assert h.running(job) == []
    metric = result.eval.failed_tg_allocs["web"]
    assert metric.nodes_evaluated == 2 and metric.nodes_filtered == 2
    assert metric.constraint_filtered == {"${attr.kernel.name} = windows": 2}
    assert metric.coalesced_failures == 9
    words = describe_failures(metric)
    assert "2 nodes filtered by constraint ${attr.kernel.name} = windows" in words
    assert result.eval.queued_allocations == {"web": 10}


def test_missing_driver_filters_the_node() -> None:
    h = Harness()
    h.state.upsert_node(mock.node(drivers=mock.drivers("exec")))
    ok = h.state.upsert_node(mock.node())
    job = mock.job()
    job = msgspec.structs.replace(
        job, task_groups=(mock.group(count=2, tasks=(mock.task(driver="docker"),)),)
    )
    job, _ = _register(h, job)
    assert {a.node_id for a in h.running(job)} == {ok.id}


def test_memory_exhaustion_blocks_the_eval_and_is_described() -> None:
    h = Harness()
    h.state.upsert_node(mock.node())
    job = mock.job()
    big = mock.task(resources=Resources(cpu=100, memory_mb=3000))
    job = msgspec.structs.replace(job, task_groups=(mock.group(count=3, tasks=(big,)),))
    job, result = _register(h, job)
    assert len(h.running(job)) == 2
    metric = result.eval.failed_tg_allocs["web"]
    assert metric.dimension_exhausted == {"memory": 1}
    assert describe_failures(metric) == ["1 node exhausted memory"]
    (blocked,) = result.new_evals
    assert blocked.status == EVAL_BLOCKED and blocked.previous_eval == result.eval.id
    assert result.eval.blocked_eval == blocked.id
    assert result.eval.queued_allocations == {"web": 1}
    # a blocked eval that still cannot place is reblocked, not duplicated
    again = h.process(blocked)
    assert again.eval.status == EVAL_BLOCKED and again.new_evals == []
    # capacity arrives: the blocked eval places the rest
    h.state.upsert_node(mock.node())
    done = h.process(blocked)
    assert done.eval.status == EVAL_COMPLETE and len(h.running(job)) == 3


def test_static_port_taken_exhausts_the_node() -> None:
    h = Harness()
    node = h.state.upsert_node(mock.node())
    static = (NetworkResource(reserved_ports=(Port(label="http", value=8080),)),)
    first, _ = _register(h, mock.job(task_groups=(mock.group(count=1, networks=static),)))
    assert len(h.running(first)) == 1
    second, result = _register(h, mock.job(task_groups=(mock.group(count=1, networks=static),)))
    assert h.running(second) == []
    metric = result.eval.failed_tg_allocs["web"]
    assert metric.nodes_exhausted == 1
    assert describe_failures(metric) == ["1 node exhausted network: reserved port collision"]
    # the node's own reserved port 22 is never handed out either
    ssh = (NetworkResource(reserved_ports=(Port(label="ssh", value=22),)),)
    third, _ = _register(h, mock.job(task_groups=(mock.group(count=1, networks=ssh),)))
    assert h.running(third) == [] and node.id


def test_dynamic_ports_never_collide_on_a_node() -> None:
    h = Harness()
    node = h.state.upsert_node(mock.node(min_dynamic_port=20000, max_dynamic_port=20040))
    small = mock.task(resources=Resources(cpu=10, memory_mb=10))
    job = mock.job(task_groups=(mock.group(count=20, tasks=(small,)),))
    job, result = _register(h, job)
    allocs = h.running(job)
    assert len(allocs) == 20 and result.eval.status == EVAL_COMPLETE
    ports = [p.value for a in allocs for p in a.allocated_resources.shared.ports]
    assert len(ports) == 40 == len(set(ports))
    assert all(20000 <= p <= 20040 for p in ports)
    # the range now has 1 port left: a job asking 2 per instance cannot fit
    more, result = _register(h, mock.job(task_groups=(mock.group(count=1, tasks=(small,)),)))
    assert h.running(more) == [] and node.id
    assert "network: dynamic port selection failed" in (
        result.eval.failed_tg_allocs["web"].dimension_exhausted
    )


def test_distinct_hosts_puts_each_instance_on_its_own_node() -> None:
    h = Harness()
    for _ in range(3):
        h.state.upsert_node(mock.node())
    distinct = Constraint(operand="distinct_hosts", r_target="true")
    job = mock.job(task_groups=(mock.group(count=4, constraints=(distinct,)),))
    job, result = _register(h, job)
    assert len({a.node_id for a in h.running(job)}) == 3 == len(h.running(job))
    assert result.eval.failed_tg_allocs["web"].constraint_filtered == {"distinct_hosts": 3}


def test_affinity_prefers_matching_nodes() -> None:
    from steppe.structs import Affinity

    h = Harness()
    for i in range(6):
        h.state.upsert_node(mock.node(meta={"rack": "r1" if i < 2 else "r2"}))
    affinity = Affinity(l_target="${meta.rack}", r_target="r1", operand="=", weight=100)
    job = mock.job(affinities=(affinity,), task_groups=(mock.group(count=2),))
    job, _ = _register(h, job)
    racks = {h.state.node(a.node_id).meta["rack"] for a in h.running(job)}  # type: ignore[union-attr]
    assert racks == {"r1"}


def test_candidate_sampling_looks_at_a_log2_sample_of_the_nodes() -> None:
    h = Harness()
    for _ in range(1000):
        h.state.upsert_node(mock.node())
    job = mock.job(task_groups=(mock.group(count=5),))
    job, _ = _register(h, job)
    for alloc in h.running(job):
        assert alloc.metrics is not None and alloc.metrics.nodes_evaluated == 10
