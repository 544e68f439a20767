"""The local agent: this node's services and checks, which are the truth for this node.

Anti-entropy makes the catalog match them — right after every local change, whenever the
catalog's rows change (someone deregistered us through ``/v1/catalog``: repaired), and every
``sync_interval`` seconds. The agent proves it is alive by keeping a lease-bound marker
renewed; the catalog server turns ``serfHealth`` critical when that marker lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from steppe.backend import Put
from steppe.catalog import _reads as reads
from steppe.catalog._checks import CheckRunner
from steppe.catalog._defs import CheckDef, ServiceDef, parse_check, parse_service
from steppe.catalog._server import CatalogServer, with_service
from steppe.catalog._tables import ALIVE, CATALOG_READ
from steppe.errors import NotFoundError, Problem, ValidationError
from steppe.state import Txn
from steppe.structs import (
    HEALTH_CRITICAL,
    HEALTH_PASSING,
    SERF_CHECK_ID,
    SERF_CHECK_NAME,
    AgentService,
    CatalogNode,
    HealthCheck,
    go_duration,
    to_msgpack,
)

log = logging.getLogger(__name__)


@dataclass
class _Check:
    row: HealthCheck
    definition: CheckDef | None = None
    runner: CheckRunner | None = None
    critical_since: float | None = None


class LocalAgent:
    def __init__(
        self,
        catalog: CatalogServer,
        node_name: str,
        address: str,
        *,
        node_id: str = "",
        node_meta: dict[str, str] | None = None,
        enable_script_checks: bool = False,
        sync_interval: float = 30.0,
        heartbeat_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.node_name = node_name
        self.address = address
        self.enable_script_checks = enable_script_checks
        self._node = CatalogNode(
            id=node_id,
            node=node_name,
            address=address,
            datacenter=catalog.datacenter,
            tagged_addresses={"lan": address, "wan": address},
            meta=dict(node_meta or {}),
        )
        self._sync_interval = sync_interval
        self._heartbeat_ttl = heartbeat_ttl
        self._clock = clock
        self._services: dict[str, ServiceDef] = {}
        self._checks: dict[str, _Check] = {}
        self._dirty = asyncio.Event()
        self._lease = 0
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self._heartbeat()
        self._checks[SERF_CHECK_ID] = _Check(
            HealthCheck(
                node=self.node_name,
                check_id=SERF_CHECK_ID,
                name=SERF_CHECK_NAME,
                status=HEALTH_PASSING,
                output="Agent alive and reachable",
            )
        )
        await self.sync()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._sync_loop()), loop.create_task(self._beat_loop())]

    async def stop(self) -> None:
        """Stops checks and heartbeats, as a crash would: the catalog sees this node's
        agent failed once its heartbeat lease lapses, and an agent restarted within the
        TTL goes unnoticed. Revoking the lease here made every server that stopped a
        moment before the others fail, and lose the sessions on it, during a restart of
        the whole cluster (as Consul servers, which do not leave on terminate, do not)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for check in self._checks.values():
            if check.runner is not None:
                await check.runner.stop()

    async def leave(self) -> None:
        """A graceful leave: stop, then remove this node from the catalog at once."""
        await self.stop()
        if self._lease:
            with contextlib.suppress(Exception):
                await self.catalog.store.backend.lease_revoke(self._lease)
            self._lease = 0
        await self.catalog.deregister({"Node": self.node_name})

    # reads ---------------------------------------------------------------------------
    @property
    def node(self) -> CatalogNode:
        return self._node

    def services(self) -> dict[str, AgentService]:
        return {sid: self._service_row(s) for sid, s in sorted(self._services.items())}

    def checks(self) -> dict[str, HealthCheck]:
        services = {sid: self._service_row(s) for sid, s in self._services.items()}
        return {cid: with_service(c.row, services) for cid, c in sorted(self._checks.items())}

    def _service_row(self, s: ServiceDef) -> AgentService:
        return AgentService(
            id=s.service_id,
            service=s.name,
            tags=s.tags,
            address=s.address,
            meta=s.meta,
            port=s.port,
            enable_tag_override=s.enable_tag_override,
            datacenter=self.catalog.datacenter,
        )

    # local changes -------------------------------------------------------------------
    async def register_service(self, body: Any) -> None:
        """``PUT /v1/agent/service/register``; returns once the catalog has it."""
        await self.add_service(parse_service(body))

    async def add_service(self, service: ServiceDef) -> None:
        old = self._services.get(service.service_id)
        if old is not None:
            for check in old.checks:
                await self._drop_check(check.check_id)
        self._services[service.service_id] = service
        for check in service.checks:
            await self._add_check(check)
        await self.sync()

    async def deregister_service(self, service_id: str) -> None:
        service = self._services.pop(service_id, None)
        if service is None:
            raise NotFoundError(f"Unknown service ID {service_id!r}")
        for check_id in [cid for cid, c in self._checks.items() if c.row.service_id == service_id]:
            await self._drop_check(check_id)
        await self.sync()

    async def register_check(self, body: Any) -> None:
        definition = parse_check(body)
        if definition.service_id and definition.service_id not in self._services:
            raise ValidationError(
                Problem("ServiceID", f"service {definition.service_id!r} is not registered here")
            )
        await self._add_check(definition)
        await self.sync()

    async def deregister_check(self, check_id: str) -> None:
        if check_id not in self._checks or check_id == SERF_CHECK_ID:
            raise NotFoundError(f"Unknown check ID {check_id!r}")
        await self._drop_check(check_id)
        await self.sync()

    async def update_ttl(self, check_id: str, status: str, output: str) -> None:
        check = self._checks.get(check_id)
        if check is None or check.definition is None:
            raise NotFoundError(f"Unknown check ID {check_id!r}")
        if check.definition.kind != "ttl" or check.runner is None:
            raise ValidationError(Problem(check_id, "is not a TTL check"))
        check.runner.ttl_touched()
        self._on_result(check_id, status, output)
        await self.sync()

    async def _add_check(self, d: CheckDef) -> None:
        await self._drop_check(d.check_id)
        row = HealthCheck(
            node=self.node_name,
            check_id=d.check_id,
            name=d.name,
            status=d.status,
            notes=d.notes,
            service_id=d.service_id,
            type=d.kind,
            interval=go_duration(d.interval) if d.interval else "",
            timeout=go_duration(d.timeout) if d.kind != "ttl" else "",
        )
        runner = CheckRunner(
            d, self._on_result, clock=self._clock, enable_script_checks=self.enable_script_checks
        )
        self._checks[d.check_id] = _Check(row, d, runner)
        runner.start()

    async def _drop_check(self, check_id: str) -> None:
        check = self._checks.pop(check_id, None)
        if check is not None and check.runner is not None:
            await check.runner.stop()

    def _on_result(self, check_id: str, status: str, output: str) -> None:
        check = self._checks.get(check_id)
        if check is None:
            return
        if check.row.status != status or check.row.output != output:
            check.row = msgspec.structs.replace(check.row, status=status, output=output)
            self._dirty.set()
        d = check.definition
        if status != HEALTH_CRITICAL:
            check.critical_since = None
        elif check.critical_since is None:
            check.critical_since = self._clock()
        elif d and d.deregister_critical_after and d.service_id in self._services:
            self._maybe_reap(d, check.critical_since)

    def _maybe_reap(self, d: CheckDef, critical_since: float) -> None:
        if self._clock() - critical_since >= d.deregister_critical_after / 1e9:
            log.info("deregistering %s: critical for too long", d.service_id)
            asyncio.get_running_loop().create_task(self._reap_service(d.service_id))

    async def _reap_service(self, service_id: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self.deregister_service(service_id)

    # anti-entropy ----------------------------------------------------------------------
    async def sync(self) -> int:
        """Makes the catalog match this agent; returns the write's revision (0: in sync)."""
        snap = self.catalog.store.snapshot()
        checks = []
        for check in self._checks.values():
            row = check.row
            if check_id_is_serf(row) and snap.get(ALIVE.name, self.node_name) is None:
                stored = reads.check(snap, self.node_name, SERF_CHECK_ID)
                row = stored or row
            checks.append(row)
        services = [self._service_row(s) for s in self._services.values()]
        return await self.catalog.sync_node(self._node, services, checks)

    async def _sync_loop(self) -> None:
        store = self.catalog.store
        index = store.snapshot().table_index(*CATALOG_READ)
        while True:
            block = asyncio.ensure_future(store.block(CATALOG_READ, index, self._sync_interval))
            dirty = asyncio.ensure_future(self._dirty.wait())
            try:
                await asyncio.wait({block, dirty}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                block.cancel()
                dirty.cancel()
            self._dirty.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("anti-entropy sync failed; will retry")
                await asyncio.sleep(1.0)
            index = store.snapshot().table_index(*CATALOG_READ)

    async def _heartbeat(self) -> None:
        backend = self.catalog.store.backend
        if self._lease:
            try:
                await backend.lease_keepalive(self._lease)
                return
            except NotFoundError:
                log.warning("heartbeat lease of %s lapsed; renewing", self.node_name)
        self._lease = await backend.lease_grant(self._heartbeat_ttl)
        key = self.catalog.store.key(ALIVE.name, self.node_name)
        await self.catalog.store.commit(
            Txn((), (Put(key, to_msgpack(self._lease), self._lease),), "heartbeat")
        )
        self._dirty.set()

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_ttl / 3)
            try:
                await self._heartbeat()
            except Exception:
                log.exception("heartbeat failed; will retry")


def check_id_is_serf(row: HealthCheck) -> bool:
    return row.check_id == SERF_CHECK_ID
