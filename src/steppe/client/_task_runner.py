"""One task of an allocation, from setup to dead: start it, wait for it, apply the restart
policy, and record every step as a task event.

The runner is the only code that drives the task's driver handle; ``kill``, ``restart``
and template changes only set a flag and wake it, so there is never a second caller
racing a start against a stop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from steppe.client import _events as ev
from steppe.client._restart import Decision, Outcome, RestartTracker, TrackerState
from steppe.client._services import ServiceRegistrar, ServiceRegistration
from steppe.client._templates import TemplateContext, TemplateHook, TemplateHookFactory
from steppe.drivers import Driver, ExitResult, TaskHandle, TaskSpec
from steppe.errors import SteppeError
from steppe.structs import (
    NS,
    Allocation,
    Job,
    RestartPolicy,
    Task,
    TaskEvent,
    TaskState,
    Template,
    rfc3339,
    unix_ns,
)

log = logging.getLogger(__name__)

MAX_EVENTS = 10
"""Nomad keeps the last 10 events of a task."""

PENDING, RUNNING, DEAD = "pending", "running", "dead"


class PersistedTask(msgspec.Struct, frozen=True):
    state: TaskState = msgspec.field(default_factory=TaskState)
    handle: TaskHandle | None = None
    tracker: TrackerState = msgspec.field(default_factory=TrackerState)


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Everything a task runner needs, resolved by its alloc runner."""

    alloc: Allocation
    job: Job
    task: Task
    driver: Driver | None
    spec: TaskSpec
    policy: RestartPolicy
    registrations: tuple[ServiceRegistration, ...]
    services: ServiceRegistrar | None
    templates: TemplateHookFactory | None
    clock: Callable[[], float]


class TaskRunner:
    def __init__(
        self,
        ctx: TaskContext,
        on_change: Callable[[], None],
        restored: PersistedTask | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = ctx.task.name
        self._on_change = on_change
        self._restored = restored is not None
        restored = restored or PersistedTask()
        self.state: TaskState = restored.state
        self.handle: TaskHandle | None = restored.handle
        self.tracker = RestartTracker(ctx.policy, ctx.job.type, rng=rng, state=restored.tracker)
        self._wake = asyncio.Event()
        self._kill_reason: str | None = None
        self._restart_reason: str | None = None
        self._hook: TemplateHook | None = None

    @property
    def dead(self) -> bool:
        return self.state.state == DEAD

    def snapshot(self) -> PersistedTask:
        return PersistedTask(state=self.state, handle=self.handle, tracker=self.tracker.state())

    def kill(self, reason: str = "", event: TaskEvent | None = None) -> None:
        """Asks the runner to stop the task for good; ``run()`` returns once it is dead."""
        if self.dead or self._kill_reason is not None:
            return
        if event is not None:
            self._emit(event)
        self._kill_reason = reason
        self._wake.set()

    def restart(self, reason: str = "Restart requested") -> None:
        """Stops and starts the task again now, not counted against the restart policy."""
        if self.dead or self._kill_reason is not None:
            return
        self._emit(ev.restart_signaled(self._now_ns(), reason))
        self._restart_reason = reason
        self._wake.set()

    async def signal(self, signal: str, reason: str = "") -> None:
        handle, driver = self.handle, self.ctx.driver
        if handle is None or driver is None or self.state.state != RUNNING:
            raise SteppeError(f"task {self.name!r} is not running")
        self._emit(ev.signaling(self._now_ns(), signal, reason))
        await driver.signal(handle, signal)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._hook is not None:
                hook, self._hook = self._hook, None
                await asyncio.shield(_close_quietly(hook))

    async def _run(self) -> None:
        if self.dead:
            return
        if not await self._prepare(announce=not self._restored):
            return
        handle = await self._recover() if self._restored else None
        while True:
            cause = ""
            if handle is None:
                if self._kill_reason is not None:
                    self._emit(ev.killed(self._now_ns()), state=DEAD, finished_at=self._now_rfc())
                    return
                handle, decision, cause = await self._start()
            if handle is not None:
                result = await self._wait_exit(handle)
                handle = None
                await self._after_exit(result)
                if self._kill_reason is not None:
                    self._emit(ev.killed(self._now_ns()), state=DEAD, finished_at=self._now_rfc())
                    return
                decision, cause = self._decide(result), ev.exit_cause(result)
            if not await self._apply(decision, cause):
                return

    async def _prepare(self, *, announce: bool) -> bool:
        """Checks the task can run here and renders its templates; False when it cannot."""
        now = self._now_ns()
        if announce:
            self._emit(ev.received(now))
        driver, task = self.ctx.driver, self.ctx.task
        if driver is None:
            error = f"driver {task.driver!r} is not available on this node"
            self._fail(ev.driver_failure(now, error))
            return False
        problems = driver.validate_config(self.ctx.spec.config)
        if problems:
            self._fail(ev.failed_validation(now, "; ".join(problems)))
            return False
        if announce:
            self._emit(ev.setup(now))
        if task.templates:
            return await self._render_templates()
        return True

    async def _render_templates(self) -> bool:
        factory = self.ctx.templates
        if factory is None:
            error = "this agent has no template renderer; the task's templates cannot be rendered"
            self._fail(ev.setup_failure(self._now_ns(), error))
            return False
        context = TemplateContext(
            alloc=self.ctx.alloc,
            task=self.ctx.task,
            task_dir=self.ctx.spec.task_dir,
            env=self.ctx.spec.env,
            on_change=self._template_changed,
        )
        self._hook = factory(context)
        try:
            await self._hook.render()
        except SteppeError as exc:
            self._fail(ev.setup_failure(self._now_ns(), f"Template failed: {exc}"))
            return False
        return True

    async def _template_changed(self, template: Template) -> None:
        if template.change_mode == "restart":
            self.restart("Template with change_mode restart re-rendered")
        elif template.change_mode == "signal":
            signal = template.change_signal or "SIGHUP"
            try:
                await self.signal(signal, "Template re-rendered")
            except SteppeError as exc:
                log.warning("task %s: template signal failed: %s", self.name, exc)
        else:
            self._emit(ev.template_rendered(self._now_ns(), "Template re-rendered"))

    async def _recover(self) -> TaskHandle | None:
        handle, driver = self.handle, self.ctx.driver
        if handle is None or driver is None:
            return None
        try:
            alive = await driver.recover(handle)
        except SteppeError as exc:
            log.warning("task %s: could not recover %s: %s", self.name, handle.task_id, exc)
            alive = False
        if not alive:
            self.handle = None
            self._on_change()
            return None
        await self._register_services()
        return handle

    async def _start(self) -> tuple[TaskHandle | None, Decision, str]:
        driver = self.ctx.driver
        assert driver is not None
        try:
            handle = await driver.start(self.ctx.spec)
        except Exception as exc:
            if not isinstance(exc, SteppeError):
                log.exception("task %s: driver %s failed to start it", self.name, driver.name)
            error = str(exc) or type(exc).__name__
            now = self._now_ns()
            self._emit(ev.driver_failure(now, error))
            recoverable = bool(getattr(exc, "recoverable", True))
            return None, self.tracker.on_start_error(recoverable, now), error
        self.handle = handle
        now_rfc = self._now_rfc()
        self._emit(ev.started(self._now_ns()), state=RUNNING, started_at=now_rfc)
        await self._register_services()
        return handle, Decision(Outcome.RESTART, 0, ""), ""

    async def _wait_exit(self, handle: TaskHandle) -> ExitResult:
        """Waits for the task to exit; stops it when asked to be killed or restarted."""
        driver = self.ctx.driver
        assert driver is not None
        waiter = asyncio.ensure_future(_wait_quietly(driver, handle))
        stopping = False
        try:
            while not waiter.done():
                self._wake.clear()
                if not stopping and (
                    self._kill_reason is not None or self._restart_reason is not None
                ):
                    stopping = True
                    await self._stop(handle)
                    continue
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waiter, woken}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
            return waiter.result()
        finally:
            waiter.cancel()

    async def _stop(self, handle: TaskHandle) -> None:
        driver, spec = self.ctx.driver, self.ctx.spec
        assert driver is not None
        if self._kill_reason is not None:
            timeout_ns = int(spec.kill_timeout * NS)
            self._emit(ev.killing(self._now_ns(), timeout_ns, self._kill_reason))
        try:
            await driver.stop(handle, spec.kill_signal, spec.kill_timeout)
        except SteppeError as exc:
            log.warning("task %s: stop failed: %s", self.name, exc)

    async def _after_exit(self, result: ExitResult) -> None:
        handle, self.handle = self.handle, None
        await self._deregister_services()
        self._emit(ev.terminated(self._now_ns(), result))
        if handle is not None and self.ctx.driver is not None:
            try:
                await self.ctx.driver.destroy(handle)
            except SteppeError as exc:
                log.warning("task %s: cleanup failed: %s", self.name, exc)

    def _decide(self, result: ExitResult) -> Decision:
        if self._restart_reason is not None:
            reason, self._restart_reason = self._restart_reason, None
            return Decision(Outcome.RESTART, 0, reason)
        return self.tracker.on_exit(result, self._now_ns())

    async def _apply(self, decision: Decision, cause: str) -> bool:
        """Records the decision; True when the task should be started again."""
        now = self._now_ns()
        if decision.outcome is Outcome.TERMINATED:
            self._emit_dead(failed=False)
            return False
        if decision.outcome is Outcome.NOT_RESTARTING:
            self._fail(ev.not_restarting(now, decision.reason, cause))
            return False
        event = ev.restarting(now, decision.delay_ns, decision.reason, cause)
        self._emit(event, state=PENDING)
        await self._sleep(decision.delay_ns / NS)
        if self._kill_reason is not None:
            self._emit(ev.killed(self._now_ns()), state=DEAD, finished_at=self._now_rfc())
            return False
        return True

    async def _sleep(self, seconds: float) -> None:
        """Waits out a restart delay; a kill or restart request cuts it short."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            self._wake.clear()
            if self._kill_reason is not None or self._restart_reason is not None:
                self._restart_reason = None
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _register_services(self) -> None:
        registrar = self.ctx.services
        if registrar is None:
            return
        for reg in self.ctx.registrations:
            try:
                await registrar.register(reg)
            except SteppeError as exc:
                log.warning("task %s: registering service %s failed: %s", self.name, reg.id, exc)

    async def _deregister_services(self) -> None:
        registrar = self.ctx.services
        if registrar is None:
            return
        for reg in self.ctx.registrations:
            try:
                await registrar.deregister(reg.id)
            except SteppeError as exc:
                log.warning("task %s: deregistering %s failed: %s", self.name, reg.id, exc)

    def _fail(self, event: TaskEvent) -> None:
        self._emit(event)
        self._emit_dead(failed=True)

    def _emit_dead(self, *, failed: bool) -> None:
        self.state = msgspec.structs.replace(
            self.state, state=DEAD, failed=failed, finished_at=self._now_rfc()
        )
        self._on_change()

    def _emit(self, event: TaskEvent, **changes: object) -> None:
        state = self.state
        if event.type == ev.RESTARTING:
            changes["restarts"] = state.restarts + 1
            changes["last_restart"] = rfc3339(event.time / NS)
        events = (*state.events, event)[-MAX_EVENTS:]
        self.state = msgspec.structs.replace(state, events=events, **changes)
        self._on_change()

    def _now_ns(self) -> int:
        return unix_ns(self.ctx.clock())

    def _now_rfc(self) -> str:
        return rfc3339(self.ctx.clock())


async def _wait_quietly(driver: Driver, handle: TaskHandle) -> ExitResult:
    try:
        return await driver.wait(handle)
    except SteppeError as exc:
        return ExitResult(exit_code=-1, error=f"lost track of the task: {exc}")


async def _close_quietly(hook: TemplateHook) -> None:
    try:
        await hook.close()
    except Exception:
        log.exception("closing a template hook failed")
