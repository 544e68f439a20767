"""The client against an in-memory server: placement, stop, restarts of the agent itself,
unreachable servers, and orphaned tasks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.client._support import (
    FakeServer,
    kill_handles,
    make_alloc,
    make_job,
    pid_alive,
    sh_task,
    until,
)

from steppe.client import Client
from steppe.drivers import Driver, ExitResult, TaskHandle, TaskSpec
from steppe.drivers._raw_exec import RawExecDriver
from steppe.structs import Node

MakeClient = Callable[..., Client]


@pytest.fixture
async def make_client(
    tmp_path: Path, raw_exec: RawExecDriver, node: Node
) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    def make(server: FakeServer, **kw: Any) -> Client:
        kw.setdefault("drivers", {"raw_exec": raw_exec})
        client = Client(server, data_dir=tmp_path, node=node, batch_window=0.05, **kw)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        handles = [
            t.handle for c in clients for r in c.runners.values() for t in r.runners.values()
        ]
        for client in clients:
            with contextlib.suppress(Exception):
                await client.stop(leave_running=False)
        kill_handles(handles)


def task_pid(client: Client, alloc_id: str, task: str = "web") -> int:
    handle = client.runners[alloc_id].runners[task].handle
    assert handle is not None
    return int(handle.state["task_pid"])


async def test_placed_alloc_runs_and_stops_on_desired_stop(make_client: MakeClient) -> None:
    server = FakeServer(ttl=0.2)
    client = make_client(server)
    await client.start()
    await until(lambda: client.node_id in server.nodes, "node registered")
    assert server.nodes[client.node_id].status == "ready"
    alloc = make_alloc(make_job(sh_task("web", "echo up; exec sleep 300")))
    await server.place(alloc)
    await until(lambda: server.status(alloc.id) == "running", "running reported")
    states = server.allocs[alloc.id].task_states
    assert states["web"].state == "running"
    assert [e.type for e in states["web"].events] == ["Received", "Task Setup", "Started"]
    assert client.allocation(alloc.id).client_status == "running"
    await until(lambda: server.heartbeats >= 2, "heartbeats")
    pid = task_pid(client, alloc.id)
    await server.set_desired(alloc.id, "stop")
    await until(lambda: server.status(alloc.id) == "complete", "complete reported")
    assert not pid_alive(pid)
    events = [e.type for e in server.allocs[alloc.id].task_states["web"].events]
    assert events[-3:] == ["Killing", "Terminated", "Killed"]
    pushed = [u.client_status for u in server.updates if u.id == alloc.id]
    assert pushed[0] in ("pending", "running") and pushed[-1] == "complete"
    assert len(pushed) < 10, "updates are coalesced"


async def test_restarted_client_reattaches_without_a_second_process(
    make_client: MakeClient, tmp_path: Path
) -> None:
    server = FakeServer()
    first = make_client(server)
    await first.start()
    alloc = make_alloc(make_job(sh_task("web", "echo up; exec sleep 300")))
    await server.place(alloc)
    await until(lambda: server.status(alloc.id) == "running", "running")
    pid = task_pid(first, alloc.id)
    await first.stop(leave_running=True)
    assert pid_alive(pid), "leaving the tasks running"
    assert (tmp_path / "client" / "state.json").is_file()

    second = make_client(server, drivers={"raw_exec": RawExecDriver(enabled=True)})
    await second.start()
    await until(lambda: alloc.id in second.runners, "state restored")
    await until(lambda: second.runners[alloc.id].status()[0] == "running", "re-attached")
    assert task_pid(second, alloc.id) == pid
    log = tmp_path / "alloc" / alloc.id / "alloc" / "logs" / "web.stdout.0"
    assert log.read_text() == "up\n", "the task was not started a second time"
    events = [e.type for e in second.runners[alloc.id].runners["web"].state.events]
    assert events.count("Started") == 1
    await server.set_desired(alloc.id, "stop")
    await until(lambda: server.status(alloc.id) == "complete", "complete after restart")
    assert not pid_alive(pid)


async def test_tasks_keep_running_while_servers_are_unreachable(make_client: MakeClient) -> None:
    server = FakeServer(ttl=0.1)
    client = make_client(server, retry_max=0.2)
    await client.start()
    alloc = make_alloc(make_job(sh_task("web", "exec sleep 300")))
    await server.place(alloc)
    await until(lambda: server.status(alloc.id) == "running", "running")
    pid = task_pid(client, alloc.id)
    server.down = True
    beats = server.heartbeats
    await until(lambda: client.runners[alloc.id].runners["web"].state.state == "running", "up")
    client.restart_task(alloc.id, "web", "operator asked")
    await until(lambda: client.runners[alloc.id].runners["web"].state.restarts == 1, "restart")
    await until(lambda: client.runners[alloc.id].runners["web"].state.state == "running", "up")
    assert server.heartbeats == beats
    new_pid = task_pid(client, alloc.id)
    assert new_pid != pid and pid_alive(new_pid)
    server.down = False
    await until(lambda: server.heartbeats > beats, "heartbeats resume")

    def restart_reported() -> bool:
        web = server.allocs[alloc.id].task_states["web"]
        return web.restarts == 1 and web.state == "running"

    await until(restart_reported, "queued updates delivered")
    types = [e.type for e in server.allocs[alloc.id].task_states["web"].events]
    assert types[-4:] == ["Restart Signaled", "Terminated", "Restarting", "Started"]


async def test_forgotten_node_registers_again(make_client: MakeClient) -> None:
    server = FakeServer(ttl=0.1)
    client = make_client(server)
    await client.start()
    await until(lambda: client.node_id in server.nodes, "registered")
    del server.nodes[client.node_id]
    await until(lambda: client.node_id in server.nodes, "registered again")


async def test_alloc_gone_from_servers_is_stopped(make_client: MakeClient) -> None:
    server = FakeServer()
    client = make_client(server)
    await client.start()
    alloc = make_alloc(make_job(sh_task("web", "exec sleep 300")))
    await server.place(alloc)
    await until(lambda: server.status(alloc.id) == "running", "running")
    pid = task_pid(client, alloc.id)
    del server.allocs[alloc.id]
    await server._bump()
    await until(lambda: not pid_alive(pid), "task stopped")
    await until(lambda: alloc.id not in client.runners, "forgotten")
    other = make_alloc(make_job(sh_task("web", "exit 0"), job_type="batch"))
    await server.place(other)
    await until(lambda: server.status(other.id) == "complete", "updates still flow")


class ListingDriver(Driver):
    """A driver that only reports tasks left on the node, to test orphan removal."""

    name = "mock"

    def __init__(self, handles: list[TaskHandle]) -> None:
        self.handles = handles
        self.destroyed: list[str] = []

    async def fingerprint(self) -> dict[str, str] | None:
        return {}

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        return []

    async def start(self, spec: TaskSpec) -> TaskHandle:
        raise NotImplementedError

    async def wait(self, handle: TaskHandle) -> ExitResult:
        raise NotImplementedError

    async def stop(self, handle: TaskHandle, signal: str, timeout: float) -> None:
        pass

    async def destroy(self, handle: TaskHandle) -> None:
        self.destroyed.append(handle.task_id)

    async def recover(self, handle: TaskHandle) -> bool:
        return False

    async def list_tasks(self) -> list[TaskHandle]:
        return self.handles


async def test_orphaned_driver_tasks_are_removed(make_client: MakeClient) -> None:
    orphan = TaskHandle("mock", "c1", 0.0, {"alloc_id": "gone"})
    driver = ListingDriver([orphan])
    client = make_client(FakeServer(), drivers={"mock": driver})
    await client.start()
    await until(lambda: driver.destroyed == ["c1"], "orphan destroyed")
