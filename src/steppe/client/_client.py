"""The scheduler client: registers this node, keeps it alive, runs what the servers place
on it, and reports back.

Servers being unreachable never stops running work: heartbeats and status updates retry
with backoff forever while allocations keep running. Status updates are coalesced for a
short window so a burst of task events costs one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from steppe.client._alloc_runner import AllocRunner, PersistedAlloc
from steppe.client._server_api import ServerAPI
from steppe.client._services import ServiceRegistrar
from steppe.client._state import ClientState, load_state, save_state
from steppe.client._task_runner import TaskRunner
from steppe.client._templates import TemplateHookFactory
from steppe.drivers import Driver, TaskHandle
from steppe.errors import NotFoundError, SteppeError
from steppe.structs import DESIRED_RUN, NODE_STATUS_READY, Allocation, Node

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_WINDOW = 0.1
BLOCKING_WAIT = 300.0
RETRY_MIN = 0.25
RETRY_MAX = 15.0


class Client:
    def __init__(
        self,
        server: ServerAPI,
        drivers: Mapping[str, Driver],
        data_dir: Path,
        node: Node,
        services: ServiceRegistrar | None = None,
        clock: Callable[[], float] = time.time,
        *,
        templates: TemplateHookFactory | None = None,
        batch_window: float = BATCH_WINDOW,
        blocking_wait: float = BLOCKING_WAIT,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.server = server
        self.drivers = dict(drivers)
        self.data_dir = data_dir
        self.node = node
        self.services = services
        self.clock = clock
        self.templates = templates
        self.batch_window = batch_window
        self.blocking_wait = blocking_wait
        self.retry_max = retry_max
        self.registered = asyncio.Event()
        """Set once the servers accepted the node (again set after a re-registration)."""
        self.runners: dict[str, AllocRunner] = {}
        self.heartbeat_ttl = 0.0
        self._dirty: set[str] = set()
        self._flush = asyncio.Event()
        self._persist = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._synced_once = False
        self._stopping = False

    @property
    def node_id(self) -> str:
        return self.node.id

    async def start(self) -> None:
        """Re-attaches to the allocations of a previous run, then talks to the servers in
        the background; returns without waiting for them to answer."""
        state = await asyncio.to_thread(load_state, self.data_dir)
        for alloc_id, saved in state.allocs.items():
            runner = self._new_runner(saved.alloc, saved)
            self.runners[alloc_id] = runner
            runner.start()
        self._loops = [
            asyncio.create_task(self._heartbeat_loop(), name="client-heartbeat"),
            asyncio.create_task(self._watch_loop(), name="client-watch"),
            asyncio.create_task(self._update_loop(), name="client-updates"),
            asyncio.create_task(self._persist_loop(), name="client-persist"),
        ]

    async def stop(self, leave_running: bool = True) -> None:
        """Stops the client. With ``leave_running`` the tasks keep running for the next
        agent to re-attach to; otherwise they are killed and their final state reported."""
        self._stopping = True
        for loop in self._loops[:2]:
            loop.cancel()
        if leave_running:
            for runner in self.runners.values():
                await runner.detach()
        else:
            for runner in self.runners.values():
                runner.kill("client shutting down")
            for runner in self.runners.values():
                await runner.wait()
        for loop in self._loops[2:]:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        if not leave_running:
            with contextlib.suppress(SteppeError, TimeoutError):
                await asyncio.wait_for(self._push_updates(), 5.0)
        self._save()

    def allocation(self, alloc_id: str) -> Allocation:
        """This node's view of an allocation (client status and task states filled in)."""
        runner = self.runners.get(alloc_id)
        if runner is None:
            raise NotFoundError(f"allocation {alloc_id} is not running on this node")
        update = runner.client_update()
        return msgspec.structs.replace(
            runner.alloc,
            client_status=update.client_status,
            client_description=update.client_description,
            task_states=update.task_states,
        )

    def restart_task(self, alloc_id: str, task: str, reason: str = "Restart requested") -> None:
        self._task_runner(alloc_id, task).restart(reason)

    async def signal_task(self, alloc_id: str, task: str, signal: str) -> None:
        await self._task_runner(alloc_id, task).signal(signal, "Signal requested")

    def _task_runner(self, alloc_id: str, task: str) -> TaskRunner:
        runner = self.runners.get(alloc_id)
        if runner is None:
            raise NotFoundError(f"allocation {alloc_id} is not running on this node")
        if task not in runner.runners:
            raise NotFoundError(f"allocation {alloc_id} has no task {task!r}")
        return runner.runners[task]

    def _new_runner(self, alloc: Allocation, restored: PersistedAlloc | None) -> AllocRunner:
        return AllocRunner(
            alloc,
            node=self.node,
            drivers=self.drivers,
            data_dir=self.data_dir,
            services=self.services,
            templates=self.templates,
            clock=self.clock,
            on_change=self._runner_changed,
            restored=restored,
        )

    def _runner_changed(self, runner: AllocRunner) -> None:
        self._dirty.add(runner.id)
        self._flush.set()
        self._persist.set()

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Calls until it succeeds: the servers may be down for a while, the tasks stay up."""
        delay = RETRY_MIN
        while True:
            try:
                return await call()
            except SteppeError as exc:
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            except Exception:
                log.exception("%s failed unexpectedly; retrying in %.1fs", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def _register(self) -> float:
        node = msgspec.structs.replace(self.node, status=NODE_STATUS_READY)
        ttl = await self._retry("registering the node", lambda: self.server.register_node(node))
        self.registered.set()
        return ttl

    async def _heartbeat_loop(self) -> None:
        ttl = await self._register()
        wait, failures = ttl / 2, 0
        while True:
            self.heartbeat_ttl = ttl
            await asyncio.sleep(wait)
            try:
                ttl = await self.server.heartbeat(self.node.id)
            except NotFoundError:
                log.warning("the servers do not know node %s; registering again", self.node.id)
                ttl = await self._register()
            except Exception as exc:
                failures += 1
                wait = min(RETRY_MIN * 2**failures, self.retry_max)
                if not isinstance(exc, SteppeError):
                    log.exception("heartbeat failed unexpectedly")
                log.warning("heartbeat failed (%s); retrying in %.1fs", exc, wait)
                continue
            wait, failures = max(0.01, ttl / 2), 0

    async def _watch_loop(self) -> None:
        await self.registered.wait()
        index = 0
        while True:
            allocs, new_index = await self._retry(
                "watching allocations", functools.partial(self._fetch_allocs, index)
            )
            index = new_index if new_index >= index else 0
            await self._reconcile(allocs)

    async def _fetch_allocs(self, index: int) -> tuple[list[Allocation], int]:
        return await self.server.node_allocations(self.node.id, index, self.blocking_wait)

    async def _reconcile(self, allocs: list[Allocation]) -> None:
        seen = set()
        for alloc in allocs:
            seen.add(alloc.id)
            runner = self.runners.get(alloc.id)
            if runner is not None:
                runner.update(alloc)
            elif alloc.desired_status == DESIRED_RUN and not alloc.client_terminal():
                runner = self.runners[alloc.id] = self._new_runner(alloc, None)
                runner.start()
                self._runner_changed(runner)
        for alloc_id in list(self.runners):
            if alloc_id not in seen:
                runner = self.runners[alloc_id]
                runner.kill("allocation no longer exists on the servers")
                runner.when_done(functools.partial(self._forget, runner))
        if not self._synced_once:
            self._synced_once = True
            await self._remove_orphans()

    def _forget(self, runner: AllocRunner) -> None:
        if self.runners.get(runner.id) is runner and not self._stopping:
            del self.runners[runner.id]
            self._persist.set()

    async def _remove_orphans(self) -> None:
        """Removes tasks drivers still run for allocations this node no longer has."""
        live = {a for a, r in self.runners.items() if not r.done}
        for driver in self.drivers.values():
            try:
                handles = await driver.list_tasks()
            except SteppeError as exc:
                log.warning("driver %s could not list its tasks: %s", driver.name, exc)
                continue
            for handle in handles:
                if str(handle.state.get("alloc_id", "")) not in live:
                    await self._destroy_orphan(driver, handle)

    async def _destroy_orphan(self, driver: Driver, handle: TaskHandle) -> None:
        log.info("removing %s task %s: its allocation is gone", driver.name, handle.task_id)
        try:
            await driver.stop(handle, "SIGTERM", 5.0)
            await driver.destroy(handle)
        except SteppeError as exc:
            log.warning("removing orphaned task %s failed: %s", handle.task_id, exc)

    async def _update_loop(self) -> None:
        while True:
            await self._flush.wait()
            await asyncio.sleep(self.batch_window)
            self._flush.clear()
            await self.registered.wait()
            await self._retry("updating allocations", self._push_updates)

    async def _push_updates(self) -> None:
        ids, self._dirty = self._dirty, set()
        updates = [self.runners[i].client_update() for i in sorted(ids) if i in self.runners]
        if not updates:
            return
        try:
            await self.server.update_allocs(updates)
        except NotFoundError:
            await self._push_one_by_one(updates)
        except BaseException:
            self._dirty |= ids
            raise

    async def _push_one_by_one(self, updates: list[Allocation]) -> None:
        """A batch naming an allocation the servers forgot must not block the others."""
        for i, update in enumerate(updates):
            try:
                await self.server.update_allocs([update])
            except NotFoundError as exc:
                log.info("servers no longer know allocation %s: %s", update.id, exc)
            except BaseException:
                self._dirty |= {u.id for u in updates[i:]}
                raise

    async def _persist_loop(self) -> None:
        while True:
            await self._persist.wait()
            self._persist.clear()
            self._save()
            await asyncio.sleep(self.batch_window / 2)

    def _save(self) -> None:
        state = ClientState(allocs={i: r.snapshot() for i, r in self.runners.items()})
        try:
            save_state(self.data_dir, state)
        except OSError as exc:
            log.error("cannot save client state under %s: %s", self.data_dir, exc)
