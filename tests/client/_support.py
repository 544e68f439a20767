"""Builders for jobs and allocations, an in-memory ServerAPI and a recording registrar."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
from tests.support.waiting import async_wait_until

from steppe.client import ServiceRegistration
from steppe.drivers import TaskHandle
from steppe.errors import NotFoundError, SteppeError
from steppe.structs import (
    NS,
    AllocatedPortMapping,
    AllocatedResources,
    AllocatedSharedResources,
    Allocation,
    Job,
    Node,
    RestartPolicy,
    Service,
    Task,
    TaskGroup,
)

FAST_FAIL = RestartPolicy(attempts=2, interval=30 * 60 * NS, delay=NS // 20, mode="fail")


def sh_task(name: str, script: str, **fields: object) -> Task:
    return Task(
        name=name,
        driver="raw_exec",
        config={"command": "/bin/sh", "args": ["-c", script]},
        kill_timeout=2 * NS,
        **fields,  # type: ignore[arg-type]
    )


def make_job(
    *tasks: Task,
    job_type: str = "service",
    policy: RestartPolicy | None = FAST_FAIL,
    services: Iterable[Service] = (),
    job_id: str = "web",
) -> Job:
    group = TaskGroup(
        name="frontend", tasks=tuple(tasks), restart_policy=policy, services=tuple(services)
    )
    return Job(
        id=job_id,
        name=job_id,
        type=job_type,
        datacenters=("dc1",),
        task_groups=(group,),
        meta={"owner": "ops"},
    )


def make_alloc(
    job: Job, node_id: str = "node-1", *, ports: Iterable[AllocatedPortMapping] = ()
) -> Allocation:
    return Allocation(
        id=str(uuid.uuid4()),
        name=f"{job.id}.frontend[1]",
        node_id=node_id,
        job_id=job.id,
        job=job,
        task_group="frontend",
        allocated_resources=AllocatedResources(shared=AllocatedSharedResources(ports=tuple(ports))),
    )


class FakeServer:
    """The servers' side of the client contract, in memory. ``down`` makes every call fail
    as an unreachable server would."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self.nodes: dict[str, Node] = {}
        self.allocs: dict[str, Allocation] = {}
        self.index = 1
        self.updates: list[Allocation] = []
        self.heartbeats = 0
        self.down = False
        self._changed = asyncio.Condition()

    def _check(self) -> None:
        if self.down:
            raise SteppeError("no servers reachable")

    async def register_node(self, node: Node) -> float:
        self._check()
        self.nodes[node.id] = node
        return self.ttl

    async def heartbeat(self, node_id: str) -> float:
        self._check()
        if node_id not in self.nodes:
            raise NotFoundError(f"node {node_id} not found")
        self.heartbeats += 1
        return self.ttl

    async def node_allocations(
        self, node_id: str, min_index: int, timeout: float
    ) -> tuple[list[Allocation], int]:
        self._check()
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.index > min_index), timeout
                )
        self._check()
        return [a for a in self.allocs.values() if a.node_id == node_id], self.index

    async def update_allocs(self, allocs: list[Allocation]) -> None:
        self._check()
        unknown = [u.id for u in allocs if u.id not in self.allocs]
        if unknown:
            raise NotFoundError(f"allocations not found: {', '.join(unknown)}")
        for update in allocs:
            self.updates.append(update)
            self.allocs[update.id] = msgspec.structs.replace(
                self.allocs[update.id],
                client_status=update.client_status,
                client_description=update.client_description,
                task_states=update.task_states,
            )

    async def place(self, alloc: Allocation) -> None:
        self.allocs[alloc.id] = alloc
        await self._bump()

    async def set_desired(self, alloc_id: str, desired: str) -> None:
        self.allocs[alloc_id] = msgspec.structs.replace(
            self.allocs[alloc_id], desired_status=desired
        )
        await self._bump()

    async def _bump(self) -> None:
        async with self._changed:
            self.index += 1
            self._changed.notify_all()

    def status(self, alloc_id: str) -> str:
        return self.allocs[alloc_id].client_status


class RecordingRegistrar:
    def __init__(self) -> None:
        self.services: dict[str, ServiceRegistration] = {}
        self.log: list[tuple[str, str]] = []

    async def register(self, service: ServiceRegistration) -> None:
        self.services[service.id] = service
        self.log.append(("register", service.id))

    async def deregister(self, service_id: str) -> None:
        self.services.pop(service_id, None)
        self.log.append(("deregister", service_id))


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def kill_handles(handles: Iterable[TaskHandle | None]) -> None:
    """Last-resort cleanup for tasks a failing test left behind, by the pids we started."""
    for handle in handles:
        if handle is None:
            continue
        for key, kill in (("pgid", os.killpg), ("executor_pid", os.kill)):
            pid = handle.state.get(key)
            if pid:
                with contextlib.suppress(OSError):
                    kill(int(pid), signal.SIGKILL)


async def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Waits, without blocking the event loop, until ``condition()`` is truthy."""

    async def check() -> object:
        return condition()

    await async_wait_until(check, timeout=timeout, what=what)
