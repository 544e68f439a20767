"""The leader's plan check, and workers that plan concurrently from one snapshot."""

from __future__ import annotations

import msgspec

from steppe.scheduler import allocs_fit, evaluate_plan, process, schedule, seeded_ids
from steppe.scheduler._protocols import SubmitResult
from steppe.structs import (
    NODE_STATUS_DOWN,
    AllocatedPortMapping,
    AllocatedSharedResources,
    Allocation,
    Job,
    Plan,
    Resources,
)
from steppe.testing import mock
from steppe.testing.harness import START, HarnessState


def _cpu_job(cpu: int, count: int = 1) -> Job:
    task = mock.task(resources=Resources(cpu=cpu, memory_mb=128))
    return mock.job(task_groups=(mock.group(count=count, networks=(), tasks=(task,)),))


def _submitter(live: HarnessState, log: list[Plan]):  # type: ignore[no-untyped-def]
    def submit(plan: Plan) -> SubmitResult:
        log.append(plan)
        result = evaluate_plan(live, plan)
        live.apply(result)
        return result, (live.snapshot() if result.refresh_index else None)

    return submit


def _assert_no_node_oversubscribed(state: HarnessState) -> None:
    for node in state.nodes():
        live = [a for a in state.allocs_by_node(node.id) if not a.terminal()]
        fits, why = allocs_fit(node, live)
        assert fits, f"{node.name} oversubscribed: {why}"


def test_second_worker_is_rejected_then_retries_elsewhere() -> None:
    live = HarnessState()
    busy = live.upsert_node(mock.node())
    spare = live.upsert_node(mock.node())
    live.upsert_allocs([mock.alloc(node_id=busy.id, allocated_resources=mock.resources(1000))])
    job_a = live.upsert_job(_cpu_job(2000))
    job_b = live.upsert_job(_cpu_job(2000))
    snapshot = live.snapshot()
    ev_a, ev_b = mock.eval_for(job_a), mock.eval_for(job_b)

    # both workers plan from the same snapshot and both like the fuller node
    plan_a = schedule(snapshot, ev_a, START, seeded_ids("a")).plan
    plan_b = schedule(snapshot, ev_b, START, seeded_ids("b")).plan
    assert plan_a is not None and plan_b is not None
    assert list(plan_a.node_allocation) == [busy.id] == list(plan_b.node_allocation)

    first = evaluate_plan(live, plan_a)
    assert first.fully_committed(plan_a) and first.refresh_index == 0
    live.apply(first)

    log: list[Plan] = []
    result = process(snapshot, ev_b, START, _submitter(live, log), seeded_ids("b"))
    assert result.attempts == 2 and len(result.committed) == 2
    rejected, accepted = result.committed
    assert rejected.node_allocation == {} and rejected.refresh_index == live.index - 1
    assert list(accepted.node_allocation) == [spare.id]
    assert result.eval.status == "complete"
    _assert_no_node_oversubscribed(live)


def test_many_workers_on_one_snapshot_never_oversubscribe() -> None:
    live = HarnessState()
    for _ in range(4):
        live.upsert_node(mock.node())
    jobs = [live.upsert_job(_cpu_job(900, count=3)) for _ in range(5)]
    snapshot = live.snapshot()
    placed = 0
    for i, job in enumerate(jobs):
        submit = _submitter(live, [])
        result = process(snapshot, mock.eval_for(job), START, submit, seeded_ids(str(i)))
        placed += sum(len(a) for r in result.committed for a in r.node_allocation.values())
        _assert_no_node_oversubscribed(live)
    # 4 nodes x 3900 MHz hold 16 instances of 900 MHz: 15 asked, all placed
    assert placed == 15


def test_plan_check_rejects_down_missing_and_port_collisions() -> None:
    state = HarnessState()
    up = state.upsert_node(mock.node())
    down = state.upsert_node(mock.node(status=NODE_STATUS_DOWN))
    ports = AllocatedSharedResources(ports=(AllocatedPortMapping(label="x", value=8080),))
    holder = mock.alloc(
        node_id=up.id,
        allocated_resources=msgspec.structs.replace(mock.resources(), shared=ports),
    )
    state.upsert_allocs([holder])

    def alloc_on(node_id: str, **kw: object) -> Allocation:
        return mock.alloc(node_id=node_id, **kw)

    clash = alloc_on(
        up.id, allocated_resources=msgspec.structs.replace(mock.resources(), shared=ports)
    )
    plan = Plan(
        node_allocation={
            up.id: (clash,),
            down.id: (alloc_on(down.id),),
            "missing": (alloc_on("missing"),),
        },
        node_update={down.id: (msgspec.structs.replace(alloc_on(down.id), desired_status="stop"),)},
    )
    result = evaluate_plan(state, plan)
    assert result.node_allocation == {} and result.refresh_index == state.index
    assert list(result.node_update) == []  # a rejected node's share goes whole

    stop_holder = msgspec.structs.replace(holder, desired_status="stop")
    stop_only = Plan(node_update={down.id: (stop_holder,)})
    assert evaluate_plan(state, stop_only).fully_committed(stop_only)

    # stopping the holder in the same plan frees its port
    swap = Plan(
        node_update={up.id: (msgspec.structs.replace(holder, desired_status="stop"),)},
        node_allocation={up.id: (clash,)},
    )
    assert evaluate_plan(state, swap).fully_committed(swap)


def test_plan_check_all_at_once_commits_nothing_on_any_rejection() -> None:
    state = HarnessState()
    up = state.upsert_node(mock.node())
    job = mock.job(all_at_once=True)
    huge = mock.alloc(node_id=up.id, allocated_resources=mock.resources(cpu=99999))
    fine = mock.alloc(node_id=state.upsert_node(mock.node()).id)
    plan = Plan(job=job, node_allocation={up.id: (huge,), fine.node_id: (fine,)})
    result = evaluate_plan(state, plan)
    assert result.node_allocation == {} and result.refresh_index > 0


def test_allocs_fit_names_the_exhausted_dimension() -> None:
    node = mock.node()
    fits = mock.alloc(allocated_resources=mock.resources(cpu=3900))
    assert allocs_fit(node, [fits]) == (True, "")
    assert allocs_fit(node, [mock.alloc(allocated_resources=mock.resources(cpu=3901))]) == (
        False,
        "cpu",
    )
    big = mock.alloc(allocated_resources=mock.resources(cpu=10, memory_mb=8000))
    assert allocs_fit(node, [big]) == (False, "memory")
