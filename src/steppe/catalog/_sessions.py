"""Sessions: the liveness that KV locks hang on.

A session is tied to its node's health checks (``serfHealth`` by default) and, with a TTL,
to a backend lease: its marker key lives on a lease of twice the TTL (Consul's grace), so
the backend itself notices a session nobody renews. Invalidation — destroy, lapsed TTL, a
critical check, the node gone — releases or deletes the keys it holds per ``Behavior`` and
starts the lock-delay during which those keys cannot be acquired again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from steppe.backend import Compare, Delete, Op, Put
from steppe.catalog._defs import NS, normalized, parse_duration
from steppe.catalog._tables import CHECKS, KV, NODES, SESSION_TTL, SESSIONS, row_id
from steppe.errors import NotFoundError, Problem, ValidationError
from steppe.state import StateSnapshot, StateStore
from steppe.structs import (
    HEALTH_CRITICAL,
    SERF_CHECK_ID,
    SESSION_DELETE,
    SESSION_RELEASE,
    KVEntry,
    ServiceCheckRef,
    Session,
    to_msgpack,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionLimits:
    min_ttl: float = 10.0
    max_ttl: float = 86400.0


def parse_session(body: Any, default_node: str, limits: SessionLimits) -> Session:
    """A session to create, from Consul's request body; every bad field is a 400."""
    d = normalized(body if body is not None else {}, "session")
    what = "session"
    node = d.get("node") or default_node
    behavior = d.get("behavior") or SESSION_RELEASE
    if behavior not in (SESSION_RELEASE, SESSION_DELETE):
        raise ValidationError(Problem(f"{what}.Behavior", f"{behavior!r}: use release or delete"))
    delay = d.get("lockdelay", "15s")
    delay_ns = parse_duration(delay, f"{what}.LockDelay")
    if isinstance(delay, int | float) and not isinstance(delay, bool) and delay < 1000:
        delay_ns = int(delay * NS)  # Consul reads small numbers as seconds
    if delay_ns < 0:
        raise ValidationError(Problem(f"{what}.LockDelay", "must not be negative"))
    ttl = d.get("ttl") or ""
    if ttl:
        ttl_ns = parse_duration(ttl, f"{what}.TTL")
        if not limits.min_ttl * NS <= ttl_ns <= limits.max_ttl * NS:
            raise ValidationError(
                Problem(
                    f"{what}.TTL",
                    f"invalid session TTL {ttl!r}: must be between "
                    f"{limits.min_ttl:g}s and {limits.max_ttl:g}s",
                )
            )
    node_checks = d.get("nodechecks")
    if node_checks is None:
        node_checks = d.get("checks")
    if node_checks is None:
        node_checks = [SERF_CHECK_ID]
    if not isinstance(node_checks, list) or not all(isinstance(c, str) for c in node_checks):
        raise ValidationError(Problem(f"{what}.NodeChecks", "expected a list of check IDs"))
    service_checks = d.get("servicechecks")
    refs: tuple[ServiceCheckRef, ...] | None = None
    if service_checks:
        if not isinstance(service_checks, list):
            raise ValidationError(Problem(f"{what}.ServiceChecks", "expected a list"))
        refs = tuple(
            ServiceCheckRef(id=str(normalized(c, what).get("id", ""))) for c in service_checks
        )
    name = d.get("name") or ""
    if not isinstance(node, str) or not isinstance(name, str):
        raise ValidationError(Problem(what, "Node and Name must be strings"))
    return Session(
        name=name,
        node=node,
        lock_delay=delay_ns,
        behavior=behavior,
        ttl=ttl if isinstance(ttl, str) else f"{ttl}s",
        node_checks=tuple(node_checks),
        service_checks=refs,
    )


def session_check_ids(session: Session) -> list[str]:
    return list(session.node_checks) + [r.id for r in session.service_checks or ()]


def unhealthy_reason(snap: StateSnapshot, session: Session) -> str:
    """Why a session cannot live on (empty: it can)."""
    if snap.get(NODES.name, session.node) is None:
        return f"node {session.node!r} is not registered"
    for check_id in session_check_ids(session):
        check = snap.get(CHECKS.name, row_id(session.node, check_id))
        if check is None:
            return f"check {check_id!r} is not registered on node {session.node!r}"
        if check.status == HEALTH_CRITICAL:
            return f"check {check_id!r} is in critical state"
    return ""


class Sessions:
    def __init__(
        self,
        store: StateStore,
        clock: Callable[[], float],
        new_id: Callable[[], str],
    ) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._lock_delays: dict[str, float] = {}

    def lock_delayed(self, key: str) -> bool:
        until = self._lock_delays.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._lock_delays[key]
            return False
        return True

    async def create(self, session: Session) -> str:
        snap = self._store.snapshot()
        reason = unhealthy_reason(snap, session)
        if reason:
            raise ValidationError(Problem("session", reason))
        sid = self._new_id()
        session = msgspec.structs.replace(session, id=sid)
        ops: list[Op] = [Put(self._store.key(SESSIONS.name, sid), to_msgpack(session))]
        if session.ttl:
            ttl = parse_duration(session.ttl, "TTL") / NS
            lease = await self._store.backend.lease_grant(2 * ttl)
            ops.append(Put(self._store.key(SESSION_TTL.name, sid), to_msgpack(lease), lease))
        compares = [Compare(self._store.key(NODES.name, session.node), "create", ">", 0)]
        for check_id in session_check_ids(session):
            key = row_id(session.node, check_id)
            compares.append(
                Compare(
                    self._store.key(CHECKS.name, key),
                    "mod",
                    "==",
                    snap.revision_of(CHECKS.name, key),
                )
            )
        result = await self._store.backend.txn(compares, ops)
        if not result.succeeded:
            raise ValidationError(Problem("session", "node or its checks changed; retry"))
        await self._store.wait_for_revision(result.revision)
        return sid

    async def renew(self, sid: str) -> Session:
        snap = self._store.snapshot()
        session: Session | None = snap.get(SESSIONS.name, sid)
        if session is None:
            raise NotFoundError(f"Session id '{sid}' not found")
        lease: int | None = snap.get(SESSION_TTL.name, sid)
        if lease is not None:
            try:
                await self._store.backend.lease_keepalive(lease)
            except NotFoundError as exc:
                await self.invalidate(sid)
                raise NotFoundError(f"Session id '{sid}' not found") from exc
        return session

    async def invalidate(self, sid: str) -> bool:
        """Ends a session and applies its behavior to the keys it holds; False if unknown."""
        for _ in range(20):
            snap = self._store.snapshot()
            session: Session | None = snap.get(SESSIONS.name, sid)
            if session is None:
                return False
            held: list[KVEntry] = snap.by_index(KV.name, "session", sid)
            skey = self._store.key(SESSIONS.name, sid)
            compares = [Compare(skey, "mod", "==", snap.revision_of(SESSIONS.name, sid))]
            ops: list[Op] = [Delete(skey), Delete(self._store.key(SESSION_TTL.name, sid))]
            for entry in held:
                key = self._store.key(KV.name, entry.key)
                compares.append(Compare(key, "mod", "==", snap.revision_of(KV.name, entry.key)))
                if session.behavior == SESSION_DELETE:
                    ops.append(Delete(key))
                else:
                    released = msgspec.structs.replace(
                        entry, session=msgspec.UNSET, create_index=0, modify_index=0
                    )
                    ops.append(Put(key, to_msgpack(released)))
            result = await self._store.backend.txn(compares, ops)
            if not result.succeeded:
                await self._store.wait_for_revision(await self._store.backend.current_revision())
                continue
            until = self._clock() + session.lock_delay / NS
            for entry in held:
                if session.lock_delay:
                    self._lock_delays[entry.key] = until
            lease: int | None = snap.get(SESSION_TTL.name, sid)
            if lease is not None:
                await self._store.backend.lease_revoke(lease)
            await self._store.wait_for_revision(result.revision)
            return True
        return False

    async def reap(self, snap: StateSnapshot) -> None:
        """Invalidates every session whose TTL lapsed or whose node or checks failed."""
        for session in list(snap.rows(SESSIONS.name)):
            reason = unhealthy_reason(snap, session)
            if not reason and session.ttl and snap.get(SESSION_TTL.name, session.id) is None:
                reason = "TTL lapsed"
            if reason:
                log.info("invalidating session %s: %s", session.id, reason)
                await self.invalidate(session.id)
