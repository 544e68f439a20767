"""One allocation on this node: its directory, a task runner per task, its status.

The allocation's client status is derived from its tasks' states the way Nomad derives
it (a failed task fails the allocation; any running task makes it running; all dead and
none failed is complete). A failed task, or a dead leader task, takes its siblings down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from steppe.client import _events as ev
from steppe.client._alloc_setup import registrations, task_context
from steppe.client._allocdir import AllocDir
from steppe.client._payload import write_dispatch_payloads
from steppe.client._services import ServiceRegistrar, ServiceRegistration
from steppe.client._task_runner import DEAD, RUNNING, PersistedTask, TaskRunner
from steppe.client._templates import TemplateHookFactory
from steppe.drivers import Driver
from steppe.errors import SteppeError
from steppe.structs import (
    CLIENT_COMPLETE,
    CLIENT_FAILED,
    CLIENT_PENDING,
    CLIENT_RUNNING,
    DESIRED_RUN,
    Allocation,
    Node,
    TaskState,
    unix_ns,
)

log = logging.getLogger(__name__)


class PersistedAlloc(msgspec.Struct, frozen=True):
    alloc: Allocation
    tasks: dict[str, PersistedTask] = msgspec.field(default_factory=dict)
    group_services: list[str] = msgspec.field(default_factory=list)


def client_status(states: Mapping[str, TaskState]) -> tuple[str, str]:
    """Nomad's ``getClientStatus``: the allocation's status from its tasks' states."""
    kinds = {("failed" if s.failed else s.state) for s in states.values()}
    if "failed" in kinds:
        return CLIENT_FAILED, "Failed tasks"
    if RUNNING in kinds:
        return CLIENT_RUNNING, "Tasks are running"
    if "pending" in kinds:
        return CLIENT_PENDING, "No tasks have started"
    if DEAD in kinds:
        return CLIENT_COMPLETE, "All tasks have completed"
    return CLIENT_PENDING, ""


class AllocRunner:
    def __init__(
        self,
        alloc: Allocation,
        *,
        node: Node,
        drivers: Mapping[str, Driver],
        data_dir: Path,
        services: ServiceRegistrar | None,
        templates: TemplateHookFactory | None,
        clock: Callable[[], float],
        on_change: Callable[[AllocRunner], None],
        restored: PersistedAlloc | None = None,
    ) -> None:
        self.id = alloc.id
        self.alloc = alloc
        self.alloc_dir = AllocDir.of(data_dir, alloc.id)
        self.runners: dict[str, TaskRunner] = {}
        self.setup_error = ""
        self._clock = clock
        self._services = services
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._killed = False
        self._group_regs: tuple[ServiceRegistration, ...] = ()
        self._group_registered = list(restored.group_services) if restored else []
        self._pending_regs: set[asyncio.Task[None]] = set()
        job = alloc.job
        group = job.group(alloc.task_group) if job else None
        if job is None or group is None:
            self.setup_error = f"allocation arrived without its job or group {alloc.task_group!r}"
            return
        saved = restored.tasks if restored else {}
        for task in group.tasks:
            ctx = task_context(
                alloc,
                job,
                group,
                task,
                node=node,
                alloc_dir=self.alloc_dir,
                drivers=drivers,
                services=services,
                templates=templates,
                clock=clock,
            )
            self.runners[task.name] = TaskRunner(ctx, self._task_changed, saved.get(task.name))
        if group.services and self.runners:
            first = next(iter(self.runners.values())).ctx.spec
            self._group_regs = registrations(
                group.services,
                alloc=alloc,
                job=job,
                group=group,
                owner=f"group-{group.name}",
                spec=first,
                node=node,
            )

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def task_states(self) -> dict[str, TaskState]:
        return {name: r.state for name, r in self.runners.items()}

    def status(self) -> tuple[str, str]:
        if self.setup_error:
            return CLIENT_FAILED, self.setup_error
        return client_status(self.task_states())

    def client_update(self) -> Allocation:
        """The client-side fields the servers take from this node."""
        status, description = self.status()
        a = self.alloc
        return Allocation(
            id=a.id,
            namespace=a.namespace,
            eval_id=a.eval_id,
            name=a.name,
            node_id=a.node_id,
            job_id=a.job_id,
            task_group=a.task_group,
            client_status=status,
            client_description=description,
            task_states=self.task_states(),
            modify_time=unix_ns(self._clock()),
        )

    def snapshot(self) -> PersistedAlloc:
        return PersistedAlloc(
            alloc=self.alloc,
            tasks={name: r.snapshot() for name, r in self.runners.items()},
            group_services=list(self._group_registered),
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"alloc-{self.id}")

    def when_done(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` once every task of the allocation has ended."""
        if self._task is None or self._task.done():
            callback()
        else:
            self._task.add_done_callback(lambda _task: callback())

    def update(self, alloc: Allocation) -> None:
        """Takes the servers' newest view; a desired stop or evict stops the tasks."""
        if alloc.job is None:
            alloc = msgspec.structs.replace(alloc, job=self.alloc.job)
        self.alloc = alloc
        if alloc.desired_status != DESIRED_RUN:
            self.kill(alloc.desired_description or f"alloc {alloc.desired_status}")

    def kill(self, reason: str = "") -> None:
        self._killed = True
        for runner in self.runners.values():
            runner.kill(reason)

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def detach(self) -> None:
        """Stops watching the tasks but leaves them running (an agent restart)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for reg in list(self._pending_regs):
            reg.cancel()

    async def run(self) -> None:
        if self.setup_error:
            self._on_change(self)
            return
        if self.alloc.desired_status != DESIRED_RUN:
            self.kill()
        try:
            self.alloc_dir.build(list(self.runners))
            if self.alloc.job is not None:
                write_dispatch_payloads(self.alloc_dir, self.alloc.job, self.alloc.task_group)
        except (OSError, SteppeError) as exc:
            self.setup_error = f"could not build the allocation directory: {exc}"
            self._on_change(self)
            return
        tasks = {
            asyncio.create_task(r.run(), name=f"task-{r.name}"): r for r in self.runners.values()
        }
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    self._after_task(tasks[finished])
        finally:
            for t in pending:
                t.cancel()
        await self._settle_group_services()
        self._on_change(self)

    def _after_task(self, runner: TaskRunner) -> None:
        now = unix_ns(self._clock())
        if runner.state.failed:
            event = ev.sibling_failed(now, runner.name)
        elif runner.ctx.task.leader:
            event = ev.leader_dead(now)
        else:
            return
        for other in self.runners.values():
            if other is not runner and not other.dead:
                other.kill(event.display_message, event)

    def _task_changed(self) -> None:
        wanted = self._group_regs and not self._group_registered and not self._killed
        if wanted and any(r.state.state == RUNNING for r in self.runners.values()):
            self._group_registered = [reg.id for reg in self._group_regs]
            reg_task = asyncio.create_task(self._register_group())
            self._pending_regs.add(reg_task)
            reg_task.add_done_callback(self._pending_regs.discard)
        self._on_change(self)

    async def _register_group(self) -> None:
        if self._services is None:
            return
        for reg in self._group_regs:
            try:
                await self._services.register(reg)
            except SteppeError as exc:
                log.warning("alloc %s: registering service %s failed: %s", self.id, reg.id, exc)

    async def _settle_group_services(self) -> None:
        for reg_task in list(self._pending_regs):
            with contextlib.suppress(asyncio.CancelledError):
                await reg_task
        if self._services is None or not self._group_registered:
            return
        for sid in self._group_registered:
            try:
                await self._services.deregister(sid)
            except SteppeError as exc:
                log.warning("alloc %s: deregistering %s failed: %s", self.id, sid, exc)
        self._group_registered = []
