"""Cluster membership through etcd's Cluster and Maintenance gRPC services: who the
members are, who leads, adding a server's member, removing one that left."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc.aio
from aetcd import rpc

from steppe.backend._etcd_rpc import REQUIRE_LEADER, call_with_retry, open_channel
from steppe.errors import BackendError, NotFoundError


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: int
    name: str
    """Empty for a member that was added but has not started yet."""
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False


def _info(m: Any) -> MemberInfo:
    return MemberInfo(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs), m.isLearner)


def initial_cluster(members: Sequence[MemberInfo], name: str, peer_url: str) -> dict[str, str]:
    """``--initial-cluster`` for a member joining ``members`` (as returned by
    :meth:`EtcdCluster.add_member`) under ``name``."""
    out = {m.name: m.peer_urls[0] for m in members if m.name and m.peer_urls}
    out[name] = peer_url
    return out


class EtcdCluster:
    """Membership operations against a running cluster reachable at ``endpoints``."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 30.0) -> None:
        self.endpoints = list(endpoints)
        self._channel = open_channel(self.endpoints)
        self._cluster = rpc.ClusterStub(self._channel)
        self._timeout = timeout

    async def __aenter__(self) -> EtcdCluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, what: str, idempotent: bool) -> Any:
        async def attempt(remaining: float) -> Any:
            return await method(
                request, timeout=remaining, metadata=REQUIRE_LEADER, wait_for_ready=True
            )

        return await call_with_retry(
            attempt, what=what, timeout=self._timeout, idempotent=idempotent, attempt_timeout=3.0
        )

    async def members(self) -> list[MemberInfo]:
        resp = await self._call(
            self._cluster.MemberList, rpc.MemberListRequest(), "member list", True
        )
        return [_info(m) for m in resp.members]

    async def add_member(self, peer_url: str) -> list[MemberInfo]:
        """Announces a new member; returns the full list to build its ``--initial-cluster``.
        Start the new member (state ``existing``) right after: until it runs, the cluster
        counts it in its quorum."""
        existing = [m for m in await self.members() if peer_url in m.peer_urls]
        if not existing:
            request = rpc.MemberAddRequest(peerURLs=[peer_url])
            await self._call(self._cluster.MemberAdd, request, f"member add {peer_url}", False)
        return await self.members()

    async def remove_member(self, member_id: int) -> None:
        request = rpc.MemberRemoveRequest(ID=member_id)
        try:
            # Idempotent: removing a member that is already gone answers NOT_FOUND.
            await self._call(self._cluster.MemberRemove, request, "member remove", True)
        except NotFoundError:
            return

    async def remove_member_named(self, name: str) -> bool:
        for m in await self.members():
            if m.name == name:
                await self.remove_member(m.id)
                return True
        return False


async def member_status(endpoint: str, timeout: float = 2.0) -> tuple[int, int]:
    """``(member_id, leader_id)`` as the member at ``endpoint`` sees them."""
    channel = open_channel([endpoint])
    try:
        stub = rpc.MaintenanceStub(channel)
        resp = await stub.Status(rpc.StatusRequest(), timeout=timeout)
        return int(resp.header.member_id), int(resp.leader)
    except grpc.aio.AioRpcError as exc:
        raise BackendError(f"etcd status of {endpoint}: {exc.details()}") from exc
    finally:
        await channel.close()


async def find_leader(endpoints: Mapping[str, str], timeout: float = 2.0) -> str | None:
    """Which of ``{name: endpoint}`` leads, per the first member that answers."""

    async def ask(endpoint: str) -> tuple[int, int] | None:
        try:
            return await member_status(endpoint, timeout)
        except BackendError:
            return None

    names = list(endpoints)
    answers = await asyncio.gather(*(ask(endpoints[n]) for n in names))
    ids = {a[0]: n for n, a in zip(names, answers, strict=True) if a}
    for answer in answers:
        if answer and answer[1] in ids:
            return ids[answer[1]]
    return None


async def move_leader(endpoint: str, to_member: int, timeout: float = 5.0) -> None:
    """Hands etcd leadership from the member at ``endpoint``, which must lead, to the
    member ``to_member`` (etcd's MoveLeader: a transfer, not an election)."""
    channel = open_channel([endpoint])
    try:
        stub = rpc.MaintenanceStub(channel)
        await stub.MoveLeader(rpc.MoveLeaderRequest(targetID=to_member), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise BackendError(f"etcd move-leader via {endpoint}: {exc.details()}") from exc
    finally:
        await channel.close()
