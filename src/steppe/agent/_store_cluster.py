"""A server's membership in the etcd cluster that holds its region's (or datacenter's)
state: forming it once ``bootstrap_expect`` servers know each other, joining it later,
restarting on existing data, and leaving it.

Servers find each other over their HTTP APIs (``/v1/internal/store/...``), given
addresses from ``server join``, ``retry_join`` or the catalog's auto-join. Formation is
deterministic without a coordinator: once a server sees ``bootstrap_expect`` servers
and none has a cluster yet, the ``bootstrap_expect`` lowest names form it, each
starting its member with the same initial cluster; anyone else asks a formed server
to add it as a member.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from steppe._tasks import cancel_all
from steppe.backend import EtcdBackend
from steppe.errors import BackendError, SteppeError, ValidationError
from steppe.etcdmember import (
    EtcdCluster,
    EtcdMember,
    find_leader,
    initial_cluster,
    member_status,
    move_leader,
)
from steppe.rpc import with_default_port

log = logging.getLogger(__name__)
PEERING_POLL = 0.5
MAX_TXN_OPS = 1024
MAX_REQUEST_BYTES = 8 * 1024 * 1024
"""Limits for the members a server starts itself, above etcd's defaults (128 ops,
1.5 MiB) so that a plan of a hundred placements commits in one transaction."""
STORE_REQUEST_TIMEOUT = 1.0
"""How long a store write may go unanswered. etcd drops a write in flight when its leader
dies, without answering: this bounds how long writes stall in a failover (the new etcd
leader is elected in about half a second with the members' LAN timings)."""


class PeerInfo(msgspec.Struct, frozen=True):
    name: str
    http: str
    peer_url: str
    client_url: str
    formed: bool = False
    client_urls: tuple[str, ...] = ()
    founders: dict[str, str] = msgspec.field(default_factory=dict)
    """The initial cluster this server's member formed with (empty if it joined)."""
    peers: tuple[str, ...] = ()
    """The peering API addresses this server knows of: joining one server is enough to
    learn of the others, as gossip spreads membership in Nomad and Consul."""


def _fetch(url: str, body: dict[str, Any] | None = None, timeout: float = 3.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read())


class StoreCluster:
    def __init__(
        self,
        *,
        scope: str,
        name: str,
        base_dir: Path,
        advertise_ip: str,
        http_addr: str,
        client_port: int,
        peer_port: int,
        bootstrap_expect: int,
        join_addresses: Callable[[], Iterable[str]],
        api_ports: tuple[int, int] = (4646, 4648),
    ) -> None:
        """``api_ports``: the HTTP port peers serve their peering API on, and the gossip
        port operators of Nomad and Consul name in joins, which means that API here."""
        self.scope = scope
        self.name = name
        self.http_addr = http_addr
        self.bootstrap_expect = max(1, bootstrap_expect)
        self._join_addresses = join_addresses
        self._api_ports = api_ports
        self._extra_joins: set[str] = set()
        self.peer_url = f"http://{advertise_ip}:{peer_port}"
        self.client_url = f"http://{advertise_ip}:{client_port}"
        self.base_dir = base_dir
        self.member: EtcdMember | None = None
        self.backend: EtcdBackend | None = None
        self.known: dict[str, PeerInfo] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._left = False

    # what peers ask us -----------------------------------------------------------------
    def info(self) -> PeerInfo:
        member = self.member
        formed = member is not None and member.running
        founders = member.initial_cluster if member and member.cluster_state == "new" else {}
        return PeerInfo(
            self.name,
            self.http_addr,
            self.peer_url,
            self.client_url,
            formed,
            tuple(self._client_urls()) if formed else (),
            dict(founders) if formed else {},
            tuple(sorted(self._extra_joins | {p.http for p in self.known.values()})),
        )

    def _client_urls(self) -> list[str]:
        urls = [self.client_url]
        urls += [p.client_url for p in self.known.values() if p.formed]
        return list(dict.fromkeys(urls))

    async def add_peer(self, name: str, peer_url: str) -> dict[str, str]:
        """A server asks to join our formed cluster: add it as a member and tell it the
        initial cluster to start with."""
        if self.backend is None:
            raise SteppeError("this server's store is not formed yet")
        async with EtcdCluster(self._client_urls(), timeout=10) as cluster:
            members = await cluster.members()
            existing = next((m for m in members if peer_url in m.peer_urls), None)
            if existing is None:
                members = await cluster.add_member(peer_url)
        return initial_cluster(members, name, peer_url)

    def join(self, addresses: Iterable[str]) -> None:
        """Raises ValidationError for an address that is not ``host[:port]``."""
        self._extra_joins.update(self._peer_api(a) for a in addresses)

    def _peer_api(self, address: str) -> str:
        """Where the server named by ``address`` serves its peering API: a bare host, or
        its gossip port (Steppe has no gossip), means its HTTP port."""
        http, gossip = self._api_ports
        host, _, port = with_default_port(address, http).rpartition(":")
        return f"{host}:{http if int(port) == gossip else port}"

    # forming, joining, restarting ------------------------------------------------------
    async def start(self) -> EtcdBackend:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        member = self._member({self.name: self.peer_url}, "new")
        if member.has_data:
            log.info("%s store: restarting etcd member %s on its data", self.scope, self.name)
        else:
            initial, state = await self._discover()
            member = self._member(initial, state)
        self.member = member
        await member.start()
        self._supervisor = asyncio.get_running_loop().create_task(member.supervise())
        self.backend = EtcdBackend(
            [self.client_url.removeprefix("http://")],
            request_timeout=STORE_REQUEST_TIMEOUT,
            max_txn_ops=MAX_TXN_OPS,
            max_request_bytes=MAX_REQUEST_BYTES,
        )
        return self.backend

    def _member(self, initial: dict[str, str], state: str) -> EtcdMember:
        return EtcdMember(
            self.name,
            self.base_dir,
            client_url=self.client_url,
            peer_url=self.peer_url,
            initial_cluster=initial,
            cluster_state="existing" if state == "existing" else "new",
            cluster_token=f"steppe-{self.scope}",
            max_txn_ops=MAX_TXN_OPS,
            max_request_bytes=MAX_REQUEST_BYTES,
        )

    async def _discover(self) -> tuple[dict[str, str], str]:
        """Waits until we can form or join; returns (initial cluster, new|existing)."""
        announced = False
        while True:
            await self._poll_peers()
            formed = [p for p in self.known.values() if p.formed]
            for peer in formed:
                if peer.founders.get(self.name) == self.peer_url:
                    log.info("%s store: forming with %s", self.scope, ", ".join(peer.founders))
                    return dict(peer.founders), "new"
            for peer in formed:
                try:
                    answer = await asyncio.to_thread(
                        _fetch,
                        f"http://{peer.http}/v1/internal/store/{self.scope}/join",
                        {"Name": self.name, "PeerURL": self.peer_url},
                        30.0,
                    )
                    log.info("%s store: joining through %s", self.scope, peer.name)
                    return dict(answer["InitialCluster"]), "existing"
                except (OSError, ValueError, KeyError) as exc:
                    log.info("%s store: %s could not add us yet: %s", self.scope, peer.name, exc)
            everyone = {self.name: self.peer_url} | {n: p.peer_url for n, p in self.known.items()}
            if len(everyone) >= self.bootstrap_expect:
                founders = sorted(everyone)[: self.bootstrap_expect]
                if self.name in founders:
                    log.info("%s store: forming with %s", self.scope, ", ".join(founders))
                    return {n: everyone[n] for n in founders}, "new"
            elif not announced:
                log.info(
                    "%s store: waiting for %d servers (know %d)",
                    self.scope,
                    self.bootstrap_expect,
                    len(everyone),
                )
                announced = True
            await asyncio.sleep(PEERING_POLL)

    async def _poll_peers(self) -> None:
        addresses = set(self._extra_joins)
        for address in self._join_addresses():
            try:
                addresses.add(self._peer_api(address))
            except ValidationError as exc:
                log.warning("%s store: not joining %r: %s", self.scope, address, exc)
        addresses.discard(self.http_addr)
        for address in sorted(addresses):
            # saying who asks introduces us: the server we were told to join learns of us
            url = f"http://{address}/v1/internal/store/{self.scope}/peer?from={self.http_addr}"
            try:
                peer = msgspec.convert(await asyncio.to_thread(_fetch, url), PeerInfo)
            except (OSError, ValueError, msgspec.ValidationError, urllib.error.URLError):
                continue
            if peer.name != self.name:
                self.known[peer.name] = peer
                self._extra_joins.update(a for a in peer.peers if a != self.http_addr)

    # leaving -----------------------------------------------------------------------------
    async def leave(self) -> None:
        """Removes this server from the cluster (``leave_on_interrupt``/``_terminate``).

        A removed etcd member can never start on its data again, so :meth:`stop` then
        deletes that data: the server's next start joins the cluster afresh."""
        if self.member is None or not self.member.running:
            return
        await self._stop_supervising()  # the removed member exits; that is no crash
        with contextlib.suppress(BackendError, SteppeError, OSError):
            async with EtcdCluster(self._client_urls(), timeout=5) as cluster:
                members = await cluster.members()
                if len(members) > 1 and await cluster.remove_member_named(self.name):
                    self._left = True
                    log.info("%s store: left the cluster", self.scope)

    async def stop(self) -> None:
        await self._stop_supervising()
        if self.backend is not None:
            await self.backend.close()
        if self.member is not None:
            await self.member.stop()
            if self._left:
                shutil.rmtree(self.member.data_dir, ignore_errors=True)

    async def _stop_supervising(self) -> None:
        if self._supervisor is not None:
            await cancel_all([self._supervisor])
            self._supervisor = None

    async def step_aside(self) -> bool:
        """If this server's member leads the etcd cluster, hands that to another member
        that is up; whether it did.

        The scheduler leader keeps etcd's leader on another machine, so that losing
        one machine costs one election, not two in a row: when both led from the same
        machine, etcd first elected a new leader and then restarted every lease's TTL,
        the scheduler leader's included (bench/cluster.py: a new scheduler leader 3.4 s
        after the kill before, 2.2 s after; writes through survivors 0.5-1 s before,
        30 ms after)."""
        member = self.member
        if member is None or not member.running:
            return False
        me, leader = await member_status(member.endpoint)
        if me != leader:
            return False
        async with EtcdCluster(self._client_urls(), timeout=5) as cluster:
            others = [m for m in await cluster.members() if m.id != me and m.client_urls]
        for other in others:
            try:
                await member_status(other.client_urls[0].removeprefix("http://"))
            except BackendError:
                continue  # down: never hand leadership to a member that cannot take it
            await move_leader(member.endpoint, other.id)
            log.info("%s store: handed etcd leadership to %s", self.scope, other.name)
            return True
        return False

    async def members(self) -> list[dict[str, Any]]:
        """The store's members, for ``operator raft list-peers``."""
        return await store_members(self._client_urls())


async def store_members(endpoints: Sequence[str]) -> list[dict[str, Any]]:
    """The members of the etcd cluster at ``endpoints`` (a server's own, or an external
    one), as Nomad's ``/v1/operator/raft/configuration`` lists raft servers."""
    async with EtcdCluster(endpoints, timeout=5) as cluster:
        members = await cluster.members()
    clients = {m.name: m.client_urls[0].removeprefix("http://") for m in members if m.client_urls}
    leader = await find_leader(clients)
    return [
        {
            "ID": f"{m.id:x}",
            "Node": m.name or "(starting)",
            "Address": m.peer_urls[0] if m.peer_urls else "",
            "Leader": m.name == leader,
            "Voter": not m.is_learner,
            "RaftProtocol": "3",
        }
        for m in members
    ]
