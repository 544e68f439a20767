"""The periodic dispatcher and dispatch on the in-memory backend, driven by a fake clock:
no test here waits for wall-clock time to pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
from tests.support.waiting import async_wait_until

from steppe.backend import MemoryBackend
from steppe.errors import NotFoundError, ValidationError
from steppe.server import (
    Endpoints,
    HeartbeatPolicy,
    PeriodicDispatcher,
    Server,
    ServerInfo,
    dispatch_job,
    force_launch,
    periodic_child_id,
)
from steppe.state import SCHEDULER_TABLES, StateStore, writes
from steppe.structs import (
    EVAL_COMPLETE,
    Job,
    ParameterizedJobConfig,
    PeriodicConfig,
)
from steppe.testing import mock

INFO = ServerInfo("s1", "global", "dc1", "127.0.0.1:4647", "127.0.0.1:4646")


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> float:
        self.now = when.timestamp()
        return self.now


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2024, 3, 1, hour, minute, second, tzinfo=UTC)


def unix(when: datetime) -> int:
    return int(when.timestamp())


@pytest.fixture
async def store() -> AsyncIterator[StateStore]:
    s = StateStore(MemoryBackend(lease_check_interval=None), SCHEDULER_TABLES)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(10, 2))


@pytest.fixture
def endpoints(store: StateStore, clock: FakeClock) -> Endpoints:
    return Endpoints(store, "global", clock)


def periodic_job(**periodic: object) -> Job:
    config = PeriodicConfig(spec="*/5 * * * *", **periodic)  # type: ignore[arg-type]
    return mock.batch_job(id="report", periodic=config, task_groups=(mock.group(count=2),))


def children_of(store: StateStore, parent: str) -> list[Job]:
    return sorted((j for j in store.snapshot().jobs() if j.parent_id == parent), key=lambda j: j.id)


async def test_parent_gets_no_evaluation_and_a_child_launches_on_time(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    result = await endpoints.register_job(periodic_job())
    assert result.eval_id == ""
    assert store.snapshot().evals_by_job("default", "report") == []
    dispatcher = PeriodicDispatcher(store, endpoints, clock)
    assert await dispatcher.tick(clock()) == []
    assert dispatcher.next_due() == at(10, 5).timestamp()

    launched = await dispatcher.tick(clock.set(at(10, 5)))
    child_id = f"report/periodic-{unix(at(10, 5))}"
    assert launched == [child_id]
    child = store.snapshot().job("default", child_id)
    assert child is not None
    assert (child.parent_id, child.name, child.periodic) == ("report", child_id, None)
    [ev] = store.snapshot().evals_by_job("default", child_id)
    assert ev.triggered_by == "periodic-job" and ev.type == "batch"
    assert await dispatcher.tick(clock.set(at(10, 9, 59))) == []
    assert dispatcher.next_due() == at(10, 10).timestamp()


async def test_prohibit_overlap_skips_while_a_child_runs(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    await endpoints.register_job(periodic_job(prohibit_overlap=True))
    dispatcher = PeriodicDispatcher(store, endpoints, clock)
    await dispatcher.tick(clock())
    [first] = await dispatcher.tick(clock.set(at(10, 5)))
    assert await dispatcher.tick(clock.set(at(10, 10))) == []
    assert [c.id for c in children_of(store, "report")] == [first]

    [ev] = store.snapshot().evals_by_job("default", first)
    done = msgspec.structs.replace(ev, status=EVAL_COMPLETE)
    await store.commit(writes.upsert_evals(endpoints.keys, [done]))
    assert await dispatcher.tick(clock.set(at(10, 15))) == [
        periodic_child_id("report", unix(at(10, 15)))
    ]


async def test_a_new_leader_does_not_launch_the_same_time_again(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    await endpoints.register_job(periodic_job())
    old, new = (PeriodicDispatcher(store, endpoints, clock) for _ in range(2))
    await old.tick(clock())
    await new.tick(clock())
    # both leaders believe they are due at 10:05: one child, one evaluation
    clock.set(at(10, 5))
    launched = await old.tick(clock()) + await new.tick(clock())
    assert len(launched) == 1
    [child] = children_of(store, "report")
    assert len(store.snapshot().evals_by_job("default", child.id)) == 1
    # a leader starting afresh resumes after the newest child
    fresh = PeriodicDispatcher(store, endpoints, clock)
    assert await fresh.tick(clock.set(at(10, 6))) == []
    assert fresh.next_due() == at(10, 10).timestamp()


async def test_launches_missed_without_a_leader_catch_up_once(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    await endpoints.register_job(periodic_job())
    dispatcher = PeriodicDispatcher(store, endpoints, clock)
    launched = await dispatcher.tick(clock.set(at(10, 23)))
    assert launched == [periodic_child_id("report", unix(at(10, 5)))]
    assert dispatcher.next_due() == at(10, 25).timestamp()
    assert await dispatcher.tick(clock.set(at(10, 24))) == []


async def test_disabled_stopped_and_parameterized_parents_do_not_launch(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    await endpoints.register_job(periodic_job(enabled=False))
    param = mock.batch_job(
        id="param",
        periodic=PeriodicConfig(spec="* * * * *"),
        parameterized_job=ParameterizedJobConfig(),
    )
    await endpoints.register_job(param)
    stopped = mock.batch_job(id="stopped", periodic=PeriodicConfig(spec="* * * * *"))
    await endpoints.register_job(stopped)
    await endpoints.deregister_job("default", "stopped", purge=False)
    dispatcher = PeriodicDispatcher(store, endpoints, clock)
    assert await dispatcher.tick(clock.set(at(11, 0))) == []
    assert dispatcher.next_due() is None


async def test_force_launch_ignores_schedule_and_overlap(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    await endpoints.register_job(periodic_job(prohibit_overlap=True))
    first = await force_launch(endpoints, "default", "report", clock.set(at(10, 3)))
    second = await force_launch(endpoints, "default", "report", clock.set(at(10, 4)))
    assert first.eval_id and second.eval_id and first.eval_id != second.eval_id
    assert [c.id for c in children_of(store, "report")] == [
        periodic_child_id("report", unix(at(10, 3))),
        periodic_child_id("report", unix(at(10, 4))),
    ]
    with pytest.raises(NotFoundError):
        await force_launch(endpoints, "default", "nope", clock())
    await endpoints.register_job(mock.batch_job(id="plain"))
    with pytest.raises(ValidationError, match="not a periodic job"):
        await force_launch(endpoints, "default", "plain", clock())


async def test_dispatch_checks_payload_and_meta(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    config = ParameterizedJobConfig(
        payload="required", meta_required=("customer",), meta_optional=("note",)
    )
    await endpoints.register_job(mock.batch_job(id="invoice", parameterized_job=config))
    assert store.snapshot().evals_by_job("default", "invoice") == []
    with pytest.raises(ValidationError) as info:
        await dispatch_job(endpoints, "default", "invoice", b"", {"colour": "red"}, clock=clock)
    assert [p.message for p in info.value.problems] == [
        "Payload: this job requires a payload (payload = required)",
        "Meta: required keys missing: customer",
        "Meta: keys not allowed: colour (allowed: customer, note)",
    ]
    result = await dispatch_job(
        endpoints,
        "default",
        "invoice",
        b"hello",
        {"customer": "acme"},
        clock=clock,
        suffix=lambda: "0123abcd",
    )
    assert result.dispatched_job_id == f"invoice/dispatch-{unix(at(10, 2))}-0123abcd"
    child = store.snapshot().job("default", result.dispatched_job_id)
    assert child is not None
    assert child.dispatched and child.parent_id == "invoice" and child.payload == b"hello"
    assert child.meta == {"owner": "armon", "customer": "acme"}
    assert not child.is_parent()
    [ev] = store.snapshot().evals_by_job("default", child.id)
    assert ev.id == result.eval_id


async def test_dispatch_of_a_plain_or_forbidden_job(endpoints: Endpoints) -> None:
    await endpoints.register_job(mock.batch_job(id="plain"))
    with pytest.raises(ValidationError, match="not a parameterized job"):
        await dispatch_job(endpoints, "default", "plain", b"", {})
    config = ParameterizedJobConfig(payload="forbidden")
    await endpoints.register_job(mock.batch_job(id="quiet", parameterized_job=config))
    with pytest.raises(ValidationError, match="does not take a payload"):
        await dispatch_job(endpoints, "default", "quiet", b"x", {})
    with pytest.raises(ValidationError, match="exceeds the limit"):
        await dispatch_job(endpoints, "default", "quiet", b"x" * 20_000, {})


async def test_the_leaders_loop_launches_children_that_get_placed(
    store: StateStore, clock: FakeClock
) -> None:
    server = Server(store, INFO, clock=clock, heartbeat_policy=HeartbeatPolicy(min_ttl=60))
    await server.start_leading()
    try:
        await server.register_node(mock.node(id="n0"))
        await server.endpoints.register_job(periodic_job())
        clock.set(at(10, 5))
        server.leader.periodic.wake()
        child_id = periodic_child_id("report", unix(at(10, 5)))

        async def placed() -> bool:
            return len(store.snapshot().allocs_by_job("default", child_id)) == 2

        await async_wait_until(placed, what="the periodic child's allocations")
        assert store.snapshot().allocs_by_job("default", "report") == []
    finally:
        await server.stop()


async def test_purging_a_parent_keeps_its_children(
    store: StateStore, endpoints: Endpoints, clock: FakeClock
) -> None:
    await endpoints.register_job(periodic_job())
    await endpoints.register_job(periodic_job(prohibit_overlap=True))
    result = await force_launch(endpoints, "default", "report", clock())
    [child] = children_of(store, "report")
    await endpoints.deregister_job("default", "report", purge=True)
    snap = store.snapshot()
    assert snap.job("default", "report") is None
    assert snap.job_versions("default", "report") == []
    assert [v.id for v in snap.job_versions("default", child.id)] == [child.id]
    assert snap.eval(result.eval_id) is not None
