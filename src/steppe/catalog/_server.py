"""The catalog server: every write to a datacenter's catalog, KV store and sessions, and the
background reaper that turns lapsed leases into critical checks and invalidated sessions.

Writes are computed from a snapshot into the list of rows that actually change, then
committed as one backend transaction guarded by the revisions they were computed from;
a lost race recomputes. Unchanged rows are never rewritten, so anti-entropy repeating the
same registration does not wake blocking queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from steppe.backend import Compare, Delete, Op, Put
from steppe.catalog import _reads as reads
from steppe.catalog._kv import KVWriter
from steppe.catalog._register import parse_deregistration, parse_registration
from steppe.catalog._sessions import SessionLimits, Sessions
from steppe.catalog._tables import ALIVE, CHECKS, NODES, SERVICES, SESSIONS, row_id
from steppe.catalog._txn import TxnRunner
from steppe.errors import ConflictError
from steppe.state import StateSnapshot, StateStore
from steppe.structs import (
    HEALTH_CRITICAL,
    HEALTH_PASSING,
    SERF_CHECK_ID,
    AgentService,
    CatalogNode,
    HealthCheck,
    ServiceRow,
    to_msgpack,
)

log = logging.getLogger(__name__)

Change = tuple[str, str, Any]
"""(table, row id, new row or None to delete)."""

_REAP_TABLES = ("sessions", "session_ttl", "checks", "alive", "cnodes")


def _bare(row: Any) -> Any:
    return msgspec.structs.replace(row, create_index=0, modify_index=0)


class CatalogServer:
    def __init__(
        self,
        store: StateStore,
        datacenter: str,
        node_name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        session_limits: SessionLimits | None = None,
        remote_datacenters: Callable[[], Mapping[str, str]] | None = None,
        run_reaper: bool = True,
    ) -> None:
        """``remote_datacenters`` maps other DCs to a base URL of their catalog HTTP API,
        for ``?dc=`` forwarding and ``/v1/catalog/datacenters``."""
        self.store = store
        self.datacenter = datacenter
        self.node_name = node_name
        self.clock = clock
        self.new_id = new_id
        self.session_limits = session_limits or SessionLimits()
        self.remote_datacenters = remote_datacenters or (lambda: {})
        self.sessions = Sessions(store, clock, new_id)
        self.kv = KVWriter(store, self.sessions.lock_delayed)
        self.txn = TxnRunner(store, self.kv)
        self._run_reaper = run_reaper
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._run_reaper and self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None

    def snapshot(self) -> StateSnapshot:
        return self.store.snapshot()

    def datacenters(self) -> list[str]:
        return [
            self.datacenter,
            *sorted(d for d in self.remote_datacenters() if d != self.datacenter),
        ]

    # generic guarded writes ------------------------------------------------------------
    async def apply(self, compute: Callable[[StateSnapshot], list[Change]], what: str) -> int:
        """Commits the rows ``compute`` says change; returns the revision (0: nothing to do)."""
        for _ in range(20):
            snap = self.store.snapshot()
            compares: list[Compare] = []
            ops: list[Op] = []
            for table, rid, row in compute(snap):
                current = snap.get(table, rid)
                if row is not None and current is not None and _bare(current) == row:
                    continue
                if row is None and current is None:
                    continue
                key = self.store.key(table, rid)
                compares.append(Compare(key, "mod", "==", snap.revision_of(table, rid)))
                ops.append(Delete(key) if row is None else Put(key, to_msgpack(row)))
            if not ops:
                return 0
            result = await self.store.backend.txn(compares, ops)
            if result.succeeded:
                await self.store.wait_for_revision(result.revision)
                return result.revision
            await self.store.wait_for_revision(await self.store.backend.current_revision())
        raise ConflictError(f"{what}: changed concurrently too often, retry")

    # catalog ---------------------------------------------------------------------------
    async def register(self, body: Any) -> None:
        """``PUT /v1/catalog/register``."""
        reg = parse_registration(body, self.datacenter)

        def compute(snap: StateSnapshot) -> list[Change]:
            changes: list[Change] = []
            if not reg.skip_node_update or reads.node(snap, reg.node.node) is None:
                changes.append((NODES.name, reg.node.node, reg.node))
            services = {
                r.service.id: r.service for r in snap.by_index(SERVICES.name, "node", reg.node.node)
            }
            if reg.service is not None:
                services[reg.service.id] = reg.service
                changes.append(
                    (
                        SERVICES.name,
                        row_id(reg.node.node, reg.service.id),
                        ServiceRow(node=reg.node.node, service=reg.service),
                    )
                )
            for check in reg.checks:
                changes.append(
                    (
                        CHECKS.name,
                        row_id(reg.node.node, check.check_id),
                        with_service(check, services),
                    )
                )
            return changes

        await self.apply(compute, "catalog register")

    async def deregister(self, body: Any) -> None:
        """``PUT /v1/catalog/deregister``: a node, or one of its services, or one check."""
        node_name, service_id, check_id = parse_deregistration(body, self.datacenter)

        def compute(snap: StateSnapshot) -> list[Change]:
            checks = reads.node_checks(snap, node_name)
            if check_id:
                return [(CHECKS.name, row_id(node_name, check_id), None)]
            if service_id:
                return [(SERVICES.name, row_id(node_name, service_id), None)] + [
                    (CHECKS.name, row_id(node_name, c.check_id), None)
                    for c in checks
                    if c.service_id == service_id
                ]
            rows = snap.by_index(SERVICES.name, "node", node_name)
            return (
                [(NODES.name, node_name, None)]
                + [(SERVICES.name, row_id(node_name, r.service.id), None) for r in rows]
                + [(CHECKS.name, row_id(node_name, c.check_id), None) for c in checks]
            )

        await self.apply(compute, "catalog deregister")
        if not service_id and not check_id:
            for session in self.store.snapshot().by_index(SESSIONS.name, "node", node_name):
                await self.sessions.invalidate(session.id)

    async def sync_node(
        self, node: CatalogNode, services: list[AgentService], checks: list[HealthCheck]
    ) -> int:
        """Anti-entropy: makes the catalog's view of ``node`` exactly what its agent holds."""
        by_id = {s.id: s for s in services}

        def compute(snap: StateSnapshot) -> list[Change]:
            changes: list[Change] = [(NODES.name, node.node, node)]
            for old in snap.by_index(SERVICES.name, "node", node.node):
                if old.service.id not in by_id:
                    changes.append((SERVICES.name, row_id(node.node, old.service.id), None))
            for s in services:
                changes.append(
                    (SERVICES.name, row_id(node.node, s.id), ServiceRow(node=node.node, service=s))
                )
            wanted = {c.check_id for c in checks}
            for old_check in reads.node_checks(snap, node.node):
                if old_check.check_id not in wanted:
                    changes.append((CHECKS.name, row_id(node.node, old_check.check_id), None))
            for c in checks:
                changes.append((CHECKS.name, row_id(node.node, c.check_id), with_service(c, by_id)))
            return changes

        return await self.apply(compute, f"sync of node {node.node}")

    async def set_check(self, node_name: str, check_id: str, status: str, output: str) -> None:
        def compute(snap: StateSnapshot) -> list[Change]:
            current = reads.check(snap, node_name, check_id)
            if current is None:
                return []
            row = _bare(msgspec.structs.replace(current, status=status, output=output))
            return [(CHECKS.name, row_id(node_name, check_id), row)]

        await self.apply(compute, f"check {check_id}")

    # reaper ----------------------------------------------------------------------------
    async def _reap_loop(self) -> None:
        index = 0
        while True:
            try:
                snap = await self.store.block(_REAP_TABLES, index, 30.0)
                index = snap.table_index(*_REAP_TABLES)
                await self.reap_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("catalog reaper failed; retrying")
                await asyncio.sleep(1.0)

    async def reap_once(self) -> None:
        """Marks agents whose heartbeat lapsed critical, then invalidates failed sessions."""
        snap = self.store.snapshot()
        for node in reads.nodes(snap):
            serf = reads.check(snap, node.node, SERF_CHECK_ID)
            if serf and serf.status == HEALTH_PASSING and snap.get(ALIVE.name, node.node) is None:
                log.info("agent %s stopped heartbeating", node.node)
                await self.set_check(
                    node.node, SERF_CHECK_ID, HEALTH_CRITICAL, "Agent not live or unreachable"
                )
        await self.sessions.reap(self.store.snapshot())


def with_service(check: HealthCheck, services: Mapping[str, AgentService]) -> HealthCheck:
    """A check row carrying its service's name and tags, as Consul's health answers do."""
    service = services.get(check.service_id) if check.service_id else None
    return msgspec.structs.replace(
        check,
        service_name=service.service if service else "",
        service_tags=service.tags if service else (),
        create_index=0,
        modify_index=0,
    )
