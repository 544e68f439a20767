"""The scheduler server role: the region's store (in memory for ``-dev``, else etcd,
formed with the region's other servers), the server, leadership, and Nomad's API."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from steppe import __version__
from steppe.agent._leadership import Leadership
from steppe.agent._store_cluster import StoreCluster, store_members
from steppe.api._http import json_response, read_json
from steppe.api.nomad import NomadAPI, NomadAPIHolder, build_nomad_app
from steppe.backend import Backend, EtcdBackend, MemoryBackend
from steppe.config import AgentConfig
from steppe.errors import NotFoundError, ValidationError
from steppe.server import Server, ServerInfo
from steppe.state import SCHEDULER_TABLES, StateStore
from steppe.structs import ServerMember

log = logging.getLogger(__name__)


def region_root(region: str) -> str:
    return f"/steppe/region/{region}/"


def routable(bind: str) -> str:
    """An address others can reach for a wildcard bind (Nomad advertises the first
    private address; loopback is the honest answer on a machine with none)."""
    if bind not in ("0.0.0.0", "::", ""):
        return bind
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: it only picks a route
            addr: str = s.getsockname()[0]
            return addr
    except OSError:
        pass
    # no route to pick from (a private network without a default route): the first
    # private address of an interface, as Nomad picks it
    found = [a for a in _interface_addresses() if not ipaddress.ip_address(a).is_loopback]
    private = [a for a in found if ipaddress.ip_address(a).is_private]
    return (private or found or ["127.0.0.1"])[0]


def _interface_addresses() -> list[str]:
    import fcntl
    import struct

    siocgifaddr = 0x8915
    addresses = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(s.fileno(), siocgifaddr, request)
            except OSError:
                continue
            addresses.append(socket.inet_ntoa(answer[20:24]))
    return addresses


def _given(address: str) -> str:
    """The host of an address the config gives, unless it is empty or a placeholder."""
    if address.startswith("["):  # "[public_ip_address]", or an IPv6 "[::1]:4647"
        inside = address[1:].partition("]")[0]
        return inside if inside and set(inside) <= set("0123456789abcdefABCDEF:.") else ""
    return address.rpartition(":")[0] if address.count(":") == 1 else address


def advertise_ip(config: AgentConfig) -> str:
    """``advertise_addr``, else the host of ``advertise { rpc }`` (or ``http``): the seed's
    servers say where they are only there, and their store's peers must use it too."""
    for address in (config.advertise_addr, config.advertise.rpc, config.advertise.http):
        if host := _given(address):
            return host
    return routable(config.bind_addr)


def server_info(config: AgentConfig) -> ServerInfo:
    host = advertise_ip(config)
    rpc = config.advertise.rpc or f"{host}:{config.ports.rpc}"
    http = config.advertise.http or f"{host}:{config.ports.http}"
    if rpc.startswith("["):  # the seed's "[public_ip_address]" placeholders
        rpc = f"{host}:{config.ports.rpc}"
    if http.startswith("["):
        http = f"{host}:{config.ports.http}"
    return ServerInfo(
        name=f"{config.node_name()}.{config.region}",
        region=config.region,
        datacenter=config.datacenter,
        rpc_addr=rpc,
        http_addr=http,
    )


def add_peering_routes(
    app: web.Application, clusters: Callable[[str], StoreCluster | None]
) -> None:
    """``/v1/internal/store/:scope/{peer,join}``: how servers find each other and form
    or grow their store, before anything else of theirs works."""

    def cluster_of(request: web.Request) -> StoreCluster:
        cluster = clusters(request.match_info["scope"])
        if cluster is None:
            raise NotFoundError(f"this agent has no {request.match_info['scope']} store")
        return cluster

    async def peer(request: web.Request) -> web.Response:
        cluster = cluster_of(request)
        if asker := request.query.get("from"):
            cluster.join([asker])
        return json_response(cluster.info())

    async def join(request: web.Request) -> web.Response:
        import msgspec

        body = msgspec.json.decode(await read_json(request))
        if not isinstance(body, dict) or not body.get("Name") or not body.get("PeerURL"):
            raise ValidationError('expected {"Name": ..., "PeerURL": ...}')
        initial = await cluster_of(request).add_peer(str(body["Name"]), str(body["PeerURL"]))
        return json_response({"InitialCluster": initial})

    app.router.add_get("/v1/internal/store/{scope}/peer", peer)
    app.router.add_post("/v1/internal/store/{scope}/join", join)


class SchedulerRole:
    def __init__(
        self,
        config: AgentConfig,
        *,
        join_addresses: Callable[[], Iterable[str]],
        shared_backend: Backend | None = None,
        other_stores: Iterable[StoreCluster] = (),
    ) -> None:
        """``other_stores``: stores of this agent's other roles, kept from having their
        etcd leader where the scheduler leader is (the catalog's)."""
        self.config = config
        self.other_stores = tuple(other_stores)
        self.info = server_info(config)
        self.holder = NomadAPIHolder(join=self.join)
        self.shared_backend = shared_backend
        self.cluster: StoreCluster | None = None
        if shared_backend is None and not config.etcd.endpoints:
            self.cluster = StoreCluster(
                scope="region",
                name=config.node_name(),
                base_dir=Path(config.server.data_dir or config.data_dir) / "server",
                advertise_ip=advertise_ip(config),
                http_addr=self.info.http_addr,
                client_port=config.ports.etcd_client,
                peer_port=config.ports.etcd_peer,
                api_ports=(config.ports.http, config.ports.serf),
                bootstrap_expect=config.server.bootstrap_expect,
                join_addresses=join_addresses,
            )
        self.store: StateStore | None = None
        self.server: Server | None = None
        self.leadership: Leadership | None = None

    async def start(self, api_hooks: dict[str, Any]) -> Server:
        """Forms or joins the store (this may wait for other servers), then serves."""
        if self.shared_backend is not None:
            backend: Backend = self.shared_backend
        elif self.cluster is not None:
            backend = await self.cluster.start()
        else:
            backend = EtcdBackend(list(self.config.etcd.endpoints))
        self.store = StateStore(backend, SCHEDULER_TABLES, root=region_root(self.config.region))
        await self.store.start()
        workers = self.config.server.num_schedulers or 2
        self.server = server = Server(self.store, self.info, workers=workers)
        if isinstance(backend, MemoryBackend):
            await server.start_leading()
        else:
            member = ServerMember(
                name=self.info.name,
                region=self.info.region,
                datacenter=self.info.datacenter,
                rpc_addr=self.info.rpc_addr,
                http_addr=self.info.http_addr,
                build=__version__,
                bootstrap_expect=self.config.server.bootstrap_expect,
            )
            self.leadership = Leadership(
                server, backend, member, workers, while_leading=self._keep_etcd_leaders_apart
            )
            self.leadership.start()
        self.holder.api = NomadAPI(
            server=server,
            members=self.members,
            peers=self.peers,
            raft_configuration=self._store_members,
            **api_hooks,
        )
        return server

    async def _keep_etcd_leaders_apart(self) -> None:
        """The stores this agent runs members of hand their etcd leadership elsewhere
        (see :meth:`StoreCluster.step_aside`)."""
        for cluster in (self.cluster, *self.other_stores):
            if cluster is not None:
                await cluster.step_aside()

    async def _store_members(self) -> list[dict[str, Any]] | None:
        """The region store's members: our own etcd cluster's, or the external one's."""
        if self.cluster is not None:
            return await self.cluster.members()
        if self.config.etcd.endpoints:
            return await store_members(self.config.etcd.endpoints)
        return None

    async def stop(self, leave: bool) -> None:
        if self.leadership is not None:
            await self.leadership.stop()
        if self.server is not None:
            await self.server.stop()
        if self.store is not None:
            await self.store.stop()
        if self.cluster is not None:
            if leave:
                await self.cluster.leave()
            await self.cluster.stop()

    async def join(self, addresses: list[str]) -> int:
        if self.cluster is not None:
            self.cluster.join(addresses)
        return len(addresses)

    def app(self) -> web.Application:
        app = build_nomad_app(self.holder)
        add_peering_routes(app, lambda scope: self.cluster if scope == "region" else None)
        return app

    def members(self) -> list[dict[str, Any]]:
        assert self.server is not None and self.store is not None
        leader = self.server.leader_addr
        servers = self.store.snapshot().servers() or [
            ServerMember(
                name=self.info.name,
                region=self.info.region,
                datacenter=self.info.datacenter,
                rpc_addr=self.info.rpc_addr,
                http_addr=self.info.http_addr,
                build=__version__,
            )
        ]
        return [_member_json(s, s.rpc_addr == leader) for s in servers]

    def peers(self) -> list[str]:
        assert self.store is not None
        servers = self.store.snapshot().servers()
        return [s.rpc_addr for s in servers] or [self.info.rpc_addr]


def _member_json(s: ServerMember, leader: bool) -> dict[str, Any]:
    host, _, port = s.rpc_addr.rpartition(":")
    return {
        "Name": s.name,
        "Addr": host,
        "Port": int(port or 4648),
        "Status": "alive",
        "Tags": {
            "region": s.region,
            "dc": s.datacenter,
            "role": "nomad",
            "build": s.build,
            "leader": "true" if leader else "false",
            "rpc_addr": host,
            "port": port,
            "expect": str(s.bootstrap_expect),
        },
        "ProtocolCur": 2,
        "DelegateCur": 4,
    }
