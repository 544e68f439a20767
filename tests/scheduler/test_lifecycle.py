"""Jobs over time: scaling, updates, stop, system jobs, lost nodes, rescheduling."""

from __future__ import annotations

import msgspec

from steppe.structs import (
    CLIENT_FAILED,
    CLIENT_LOST,
    CLIENT_RUNNING,
    EVAL_COMPLETE,
    NODE_STATUS_DOWN,
    NS,
    Constraint,
    Job,
    ReschedulePolicy,
    Resources,
)
from steppe.testing import mock
from steppe.testing.harness import Harness


def _cluster(n: int = 5) -> Harness:
    h = Harness()
    for _ in range(n):
        h.state.upsert_node(mock.node())
    return h


def _run(h: Harness, job: Job, **eval_fields: object) -> Job:
    job = h.state.upsert_job(job)
    h.process(mock.eval_for(job, **eval_fields))
    return job


def _with_count(job: Job, count: int) -> Job:
    tg = msgspec.structs.replace(job.task_groups[0], count=count)
    return msgspec.structs.replace(job, task_groups=(tg,))


def _indexes(h: Harness, job: Job) -> list[int]:
    return sorted(a.index for a in h.running(job))


def test_scale_up_then_down_keeps_indexes_stable() -> None:
    h = _cluster()
    job = _run(h, _with_count(mock.job(), 3))
    first = {a.name: a.id for a in h.running(job)}
    assert _indexes(h, job) == [0, 1, 2]
    job = _run(h, _with_count(job, 5))
    assert _indexes(h, job) == [0, 1, 2, 3, 4]
    for alloc in h.running(job):
        if alloc.name in first:
            assert alloc.id == first[alloc.name]  # in place: same allocation, new version
            assert alloc.job_version == job.version
    job = _run(h, _with_count(job, 2))
    assert _indexes(h, job) == [0, 1]
    assert {a.id for a in h.running(job)} <= set(first.values())
    update = h.plans[-1].annotations.desired_tg_updates["web"]  # type: ignore[union-attr]
    assert update.stop == 3


def test_meta_change_updates_in_place() -> None:
    h = _cluster()
    job = _run(h, _with_count(mock.job(), 3))
    before = {a.id for a in h.running(job)}
    job = _run(h, msgspec.structs.replace(job, meta={"owner": "someone else"}))
    after = h.running(job)
    assert {a.id for a in after} == before
    assert all(a.job_version == job.version for a in after)
    assert h.plans[-1].node_update == {}


def test_changed_task_config_replaces_allocations() -> None:
    h = _cluster()
    job = _run(h, _with_count(mock.job(), 3))
    before = {a.name: a.id for a in h.running(job)}
    task = mock.task(config={"command": "/bin/true"})
    tg = msgspec.structs.replace(job.task_groups[0], tasks=(task,))
    job = _run(h, msgspec.structs.replace(job, task_groups=(tg,)))
    after = h.running(job)
    assert len(after) == 3
    for alloc in after:
        assert alloc.id != before[alloc.name]
        assert alloc.previous_allocation == before[alloc.name]
        assert alloc.job_version == job.version
    stopped = [h.state.alloc(i) for i in before.values()]
    assert all(a is not None and a.desired_status == "stop" for a in stopped)
    update = h.plans[-1].annotations.desired_tg_updates["web"]  # type: ignore[union-attr]
    assert update.destructive_update == 3


def test_job_stop_and_deregister_stop_everything() -> None:
    h = _cluster()
    job = _run(h, _with_count(mock.job(), 3))
    job = _run(h, msgspec.structs.replace(job, stop=True))
    assert h.running(job) == []
    for alloc in h.state.allocs_by_job(job.namespace, job.id):
        assert alloc.desired_description == "alloc not needed since job was stopped"
    other = _run(h, _with_count(mock.job(), 2))
    h.state.delete_job(other.namespace, other.id)
    h.process(mock.eval_for(other, triggered_by="job-deregister"))
    assert h.running(other) == []


def test_system_job_runs_on_every_eligible_node() -> None:
    h = _cluster(4)
    windows = h.state.upsert_node(mock.node(attributes={"kernel.name": "windows"}))
    job = _run(h, mock.system_job())
    nodes = {a.node_id for a in h.running(job)}
    assert len(nodes) == 4 == len(h.running(job)) and windows.id not in nodes
    assert all(a.name == f"{job.id}.web[0]" for a in h.running(job))
    late = h.state.upsert_node(mock.node())
    h.process(mock.eval_for(job, triggered_by="node-update", node_id=late.id))
    assert late.id in {a.node_id for a in h.running(job)} and len(h.running(job)) == 5
    h.state.upsert_node(msgspec.structs.replace(late, status=NODE_STATUS_DOWN))
    h.process(mock.eval_for(job, triggered_by="node-update", node_id=late.id))
    assert late.id not in {a.node_id for a in h.running(job)}
    lost = [a for a in h.state.allocs_by_node(late.id)]
    assert [a.client_status for a in lost] == [CLIENT_LOST]


def test_allocations_on_a_down_node_are_lost_and_replaced() -> None:
    h = _cluster(3)
    job = _run(h, _with_count(mock.job(), 6))
    victim_id = h.running(job)[0].node_id
    on_victim = {a.name for a in h.running(job) if a.node_id == victim_id}
    victim = h.state.node(victim_id)
    assert victim is not None
    h.state.upsert_node(msgspec.structs.replace(victim, status=NODE_STATUS_DOWN))
    h.process(mock.eval_for(job, triggered_by="node-update", node_id=victim_id))
    running = h.running(job)
    assert len(running) == 6 and victim_id not in {a.node_id for a in running}
    assert {a.name for a in running if a.previous_allocation} == on_victim
    for alloc in h.state.allocs_by_node(victim_id):
        assert alloc.client_status == CLIENT_LOST and alloc.desired_status == "stop"


def _fail(h: Harness, alloc_id: str, at: int) -> None:
    alloc = h.state.alloc(alloc_id)
    assert alloc is not None
    h.state.upsert_allocs(
        [msgspec.structs.replace(alloc, client_status=CLIENT_FAILED, modify_time=at)]
    )


def test_failed_allocation_is_rescheduled_after_its_delay_then_attempts_run_out() -> None:
    h = _cluster(3)
    policy = ReschedulePolicy(
        attempts=1, interval=3600 * NS, delay=30 * NS, delay_function="constant", unlimited=False
    )
    job = mock.job(task_groups=(mock.group(count=1, reschedule_policy=policy),))
    job = _run(h, job)
    (first,) = h.running(job)
    _fail(h, first.id, h.now)
    result = h.process(mock.eval_for(job, triggered_by="alloc-failure"))
    (followup,) = result.new_evals
    assert followup.wait_until == h.now + 30 * NS and followup.status == "pending"
    assert h.state.alloc(first.id).followup_eval_id == followup.id  # type: ignore[union-attr]
    assert [a.id for a in h.state.allocs_by_job(job.namespace, job.id)] == [first.id]

    h.process(followup, now=followup.wait_until)
    (second,) = h.running(job)
    assert second.id != first.id and second.previous_allocation == first.id
    assert second.name == first.name
    assert second.reschedule_tracker is not None
    (event,) = second.reschedule_tracker.events
    assert event.prev_alloc_id == first.id and event.delay == 30 * NS
    assert second.node_id != first.node_id  # the node it failed on is penalised

    later = followup.wait_until + 60 * NS
    _fail(h, second.id, later)
    result = h.process(mock.eval_for(job, triggered_by="alloc-failure"), now=later + 60 * NS)
    assert result.new_evals == [] and result.plan is None
    assert [a.id for a in h.state.allocs_by_job(job.namespace, job.id) if a.id != first.id] == [
        second.id
    ]


def test_exponential_reschedule_delay_doubles_and_is_capped() -> None:
    from steppe.scheduler._reschedule import next_delay
    from steppe.structs import RescheduleEvent, RescheduleTracker

    policy = ReschedulePolicy(delay=10 * NS, delay_function="exponential", max_delay=35 * NS)
    assert next_delay(policy, None) == 10 * NS
    one = RescheduleTracker(events=(RescheduleEvent(delay=10 * NS),))
    assert next_delay(policy, one) == 20 * NS
    two = RescheduleTracker(events=(*one.events, RescheduleEvent(delay=20 * NS)))
    assert next_delay(policy, two) == 35 * NS
    fib = ReschedulePolicy(delay=5 * NS, delay_function="fibonacci", max_delay=100 * NS)
    three = RescheduleTracker(events=(RescheduleEvent(delay=5 * NS), RescheduleEvent(delay=8 * NS)))
    assert next_delay(fib, three) == 13 * NS


def test_draining_node_migrates_allocations() -> None:
    h = _cluster(2)
    job = _run(h, _with_count(mock.job(), 2))
    node = h.state.node(h.running(job)[0].node_id)
    assert node is not None
    h.state.upsert_node(msgspec.structs.replace(node, drain=True))
    h.process(mock.eval_for(job, triggered_by="node-update", node_id=node.id))
    assert all(a.node_id != node.id for a in h.running(job)) and len(h.running(job)) == 2


def test_running_allocations_are_left_alone_on_reevaluation() -> None:
    h = _cluster(3)
    job = _run(h, _with_count(mock.job(), 3))
    for alloc in h.running(job):
        h.state.upsert_allocs([msgspec.structs.replace(alloc, client_status=CLIENT_RUNNING)])
    result = h.process(mock.eval_for(job))
    assert result.plan is None and result.eval.status == EVAL_COMPLETE


def test_constraint_operators_on_node_attributes() -> None:
    from steppe.scheduler._feasible import check_operand

    assert check_operand("version", "1.7.2", ">= 1.2, < 2")
    assert not check_operand("version", "2.0.0", ">= 1.2, < 2")
    assert check_operand("version", "1.4.7", "~> 1.4")
    assert check_operand("semver", "1.0.0-beta", "< 1.0.0")
    assert check_operand("regexp", "debian", "^deb")
    assert check_operand("set_contains", "a,b,c", "a, c")
    assert not check_operand("set_contains", "a,b", "a,c")
    assert check_operand("set_contains_any", "a,b", "c,b")
    assert check_operand("<", "9", "10") and check_operand(">", "b", "a")
    assert check_operand("!=", None, "x") and not check_operand("=", None, "x")
    assert check_operand("is_set", "", None) and check_operand("is_not_set", None, None)

    h = _cluster(0)
    ok = h.state.upsert_node(mock.node(meta={"rack": "r1"}, node_class="large"))
    h.state.upsert_node(mock.node(meta={"rack": "r2"}))
    rules = (
        Constraint(l_target="${meta.rack}", r_target="r1"),
        Constraint(l_target="${node.class}", operand="regexp", r_target="^lar"),
        Constraint(l_target="${attr.nomad.version}", operand="version", r_target=">= 1.2"),
    )
    tiny = mock.task(resources=Resources(cpu=10, memory_mb=10))
    job = _run(h, mock.job(task_groups=(mock.group(count=2, constraints=rules, tasks=(tiny,)),)))
    assert {a.node_id for a in h.running(job)} == {ok.id}


def test_batch_job_complete_allocations_are_not_replaced() -> None:
    h = _cluster(2)
    job = _run(h, _with_count(mock.batch_job(), 2))
    for alloc in h.running(job):
        h.state.upsert_allocs([msgspec.structs.replace(alloc, client_status="complete")])
    result = h.process(mock.eval_for(job))
    assert result.plan is None
