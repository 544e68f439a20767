"""The catalog role (Consul's server): the datacenter's store, the catalog and the
local agent's services and checks, Consul's HTTP API on 8500 and DNS on 8600.

Datacenters federate over their HTTP APIs: ``join -wan ADDR`` (or ``retry_join_wan``)
learns which datacenter ADDR serves, and requests with ``?dc=`` that name it are
forwarded there. The map of known datacenters is kept in the datacenter's own store,
so every catalog server of the datacenter forwards alike, and it survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from steppe import __version__
from steppe._tasks import cancel_all
from steppe.agent._http import serve
from steppe.agent._scheduler_role import add_peering_routes
from steppe.agent._store_cluster import StoreCluster, store_members
from steppe.api.consul import build_consul_app, raft_server
from steppe.backend import Backend, EtcdBackend
from steppe.catalog import (
    CATALOG_TABLES,
    CatalogDNSView,
    CatalogServer,
    LocalAgent,
    ServiceDef,
    catalog_root,
    reads,
)
from steppe.config import AgentConfig
from steppe.dns import DNSServer, parse_dns_config
from steppe.errors import SteppeError, ValidationError
from steppe.state import StateStore
from steppe.structs import HEALTH_PASSING, SERF_CHECK_ID

log = logging.getLogger(__name__)
MEMBER_ALIVE, MEMBER_FAILED = 1, 4
"""Serf's member status codes, as ``/v1/agent/members`` reports them."""
WAN_PREFIX = "_steppe/wan/"


def _seconds(ns: int) -> str:
    return f"{ns // 1_000_000}ms"


def dns_settings(config: AgentConfig) -> dict[str, Any]:
    """The agent config in the shape the DNS server's parser reads."""
    dns = config.dns_config
    block: dict[str, Any] = {
        "node_ttl": _seconds(dns.node_ttl),
        "service_ttl": {k: _seconds(v) for k, v in dns.service_ttl.items()},
        "allow_stale": dns.allow_stale,
        "max_stale": _seconds(dns.max_stale),
        "udp_answer_limit": dns.udp_answer_limit,
    }
    return {
        "domain": config.domain,
        "recursors": list(config.recursors),
        "ports": {"dns": config.ports.dns},
        "addresses": {"dns": config.dns_bind()[0]},
        "dns_config": block,
    }


class CatalogRole:
    def __init__(
        self, config: AgentConfig, shared_backend: Backend | None, advertise_ip: str
    ) -> None:
        self.config = config
        self.advertise_ip = advertise_ip
        self.shared_backend = shared_backend
        self.cluster: StoreCluster | None = None
        host, port = config.catalog_http_bind()
        self.http_addr = f"{advertise_ip if host in ('0.0.0.0', '') else host}:{port}"
        if shared_backend is None and not config.etcd.endpoints:
            self.cluster = StoreCluster(
                scope="dc",
                name=config.node_name(),
                base_dir=Path(config.data_dir) / "catalog",
                advertise_ip=advertise_ip,
                http_addr=self.http_addr,
                client_port=config.ports.catalog_etcd_client,
                peer_port=config.ports.catalog_etcd_peer,
                api_ports=(config.ports.catalog_http, config.ports.serf_lan),
                bootstrap_expect=config.bootstrap_expect,
                join_addresses=lambda: (*config.retry_join, *config.start_join),
            )
        self.store: StateStore | None = None
        self.catalog: CatalogServer | None = None
        self.local: LocalAgent | None = None
        self.dns: DNSServer | None = None
        self._remote: dict[str, str] = {}
        self._remote_names: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.shared_backend is not None:
            backend: Backend = self.shared_backend
        elif self.cluster is not None:
            backend = await self._form_cluster()
        else:
            backend = EtcdBackend(list(self.config.etcd.endpoints))
        dc = self.config.datacenter
        self.store = StateStore(backend, CATALOG_TABLES, catalog_root(dc))
        await self.store.start()
        self.catalog = CatalogServer(
            self.store, dc, self.config.node_name(), remote_datacenters=lambda: self._remote
        )
        await self.catalog.start()
        self.local = LocalAgent(
            self.catalog,
            self.config.node_name(),
            self.advertise_ip,
            enable_script_checks=self.config.enable_script_checks,
        )
        await self.local.start()
        if self.config.catalog_server:  # as Consul servers do: consul.service.consul finds them
            consul = ServiceDef("consul", "consul", port=self.config.ports.server)
            await self.local.add_service(consul)
        await self._load_wan()
        for address in (*self.config.retry_join_wan, *self.config.start_join_wan):
            self._tasks.append(asyncio.ensure_future(self._retry_join_wan(address)))

    async def _form_cluster(self) -> Backend:
        """Peers may need our peering endpoint before the real API exists, and servers
        without ``retry_join`` are introduced with ``join``: serve just those until the
        store is formed."""
        assert self.cluster is not None
        cluster = self.cluster
        app = web.Application()
        add_peering_routes(app, lambda scope: cluster if scope == "dc" else None)
        app.router.add_put("/v1/agent/join/{address}", self._join_handler)
        app.router.add_route("*", "/{path:.*}", _not_formed)
        runner = await serve(app, *self.config.catalog_http_bind())
        try:
            return await cluster.start()
        finally:
            await runner.cleanup()

    def app(self, agent: Any) -> web.Application:
        assert self.catalog is not None and self.local is not None
        info = {
            "Datacenter": self.config.datacenter,
            "NodeName": self.config.node_name(),
            "Server": self.config.catalog_server,
            "Version": __version__,
        }
        app = build_consul_app(
            self.catalog,
            self.local,
            agent_info=info,
            members=self.members,
            raft=self.raft_servers,
            wan_members=self.wan_members,
        )
        app.router.add_put("/v1/agent/join/{address}", self._join_handler)
        add_peering_routes(app, lambda scope: self.cluster if scope == "dc" else None)
        return app

    async def start_dns(self) -> None:
        assert self.catalog is not None
        self.dns = DNSServer(
            CatalogDNSView(self.catalog), parse_dns_config(dns_settings(self.config))
        )
        try:
            await self.dns.start()
        except (OSError, SteppeError) as exc:
            if not self.config.dev_mode:
                raise
            log.warning("dev agent: no DNS listener (%s)", exc)
            self.dns = None

    async def stop(self, leave: bool = False) -> None:
        """``leave``: remove this node from the catalog, and a server from its store,
        instead of letting its heartbeat lapse."""
        await cancel_all(self._tasks)
        if self.dns is not None:
            await self.dns.stop()
        if self.local is not None:
            await (self.local.leave() if leave else self.local.stop())
        if self.catalog is not None:
            await self.catalog.stop()
        if self.store is not None:
            await self.store.stop()
        if self.cluster is not None:
            if leave:
                await self.cluster.leave()
            await self.cluster.stop()

    def members(self) -> list[dict[str, Any]]:
        """The datacenter's agents (Consul's LAN members): every node of the catalog with
        an agent's ``serfHealth`` check, alive while it passes, a server if it offers
        the ``consul`` service. This agent is always among them."""
        assert self.catalog is not None
        snap = self.catalog.snapshot()
        me = self.config.node_name()
        server = self.config.catalog_server
        found = [] if reads.node(snap, me) else [self._member(me, self.advertise_ip, server, True)]
        for node in reads.nodes(snap):
            serf = reads.check(snap, node.node, SERF_CHECK_ID)
            if serf is not None:
                services = reads.node_services(snap, node.node)
                server = services is not None and "consul" in services.services
                alive = serf.status == HEALTH_PASSING
                found.append(self._member(node.node, node.address, server, alive))
        return found

    def _member(self, name: str, address: str, server: bool, alive: bool) -> dict[str, Any]:
        tags = {"dc": self.config.datacenter, "role": "consul" if server else "node"}
        tags |= {"build": __version__, "vsn": "2"}
        if server and name == self.config.node_name():
            tags["expect"] = str(self.config.bootstrap_expect)
        return {
            "Name": name,
            "Addr": address,
            "Port": self.config.ports.serf_lan,
            "Status": MEMBER_ALIVE if alive else MEMBER_FAILED,
            "Tags": tags,
        }

    def wan_members(self) -> list[dict[str, Any]]:
        """Servers of this datacenter and of every one it federates with (``members
        -wan``)."""
        dc = self.config.datacenter
        own = [m for m in self.members() if m["Tags"]["role"] == "consul"]
        found = [m | {"Name": f"{m['Name']}.{dc}", "Port": 8302} for m in own]
        for other, base in sorted(self._remote.items()):
            host = base.split("://", 1)[-1].rpartition(":")[0]
            name = self._remote_names.get(other, other)
            tags = {"dc": other, "role": "consul", "vsn": "2"}
            found.append(
                {"Name": f"{name}.{other}", "Addr": host, "Port": 8302, "Status": 1, "Tags": tags}
            )
        return found

    async def raft_servers(self) -> list[dict[str, Any]]:
        """The datacenter store's members, each at its server port (Consul's 8300)."""
        port = self.config.ports.server
        if self.cluster is not None:
            return [
                raft_server(m["Node"], f"{_host(m['Address'])}:{port}", m["Leader"], m["ID"])
                for m in await self.cluster.members()
            ]
        if self.config.etcd.endpoints:  # an external cluster: its members at their own peer ports
            return [
                raft_server(m["Node"], urlsplit(m["Address"]).netloc, m["Leader"], m["ID"])
                for m in await store_members(self.config.etcd.endpoints)
            ]
        host = self.http_addr.rpartition(":")[0]
        return [raft_server(self.config.node_name(), f"{host}:{port}", leader=True)]

    # WAN federation ------------------------------------------------------------------
    async def _join_handler(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        if request.query.get("wan", "").lower() in ("1", "true"):
            if self.catalog is None:
                return await _not_formed(request)
            return web.json_response({"Datacenter": await self.join_wan(address)})
        if self.cluster is None:
            raise ValidationError("this agent's store is not replicated; there is no LAN to join")
        self.cluster.join([address])
        return web.json_response({"Joined": address})

    async def join_wan(self, address: str) -> str:
        """Learns which datacenter ``address`` (host[:port] of a catalog API) serves,
        stores it, and introduces us back so the link works both ways."""
        base = address if "://" in address else f"http://{address}"
        if base.count(":") < 2:
            base = f"{base}:{self.config.ports.catalog_http}"
        try:
            remote = await asyncio.to_thread(_get_json, f"{base}/v1/agent/self")
        except (OSError, ValueError) as exc:
            raise SteppeError(f"cannot reach a catalog agent at {address}: {exc}") from exc
        dc = str(remote.get("Config", {}).get("Datacenter", ""))
        self._remote_names[dc] = str(remote.get("Config", {}).get("NodeName", dc))
        if not dc:
            raise SteppeError(f"{address} did not say which datacenter it serves")
        if dc == self.config.datacenter:
            return dc
        known = self._remote.get(dc) == base
        await self._remember(dc, base)
        if not known:
            wan_addr = self.config.advertise_addr_wan
            mine = self.http_addr if not wan_addr or wan_addr.startswith("[") else wan_addr
            with contextlib.suppress(OSError, ValueError):
                await asyncio.to_thread(_get_json, f"{base}/v1/agent/join/{mine}?wan=1", "PUT")
        return dc

    async def _remember(self, dc: str, base: str) -> None:
        assert self.catalog is not None
        self._remote[dc] = base
        await self.catalog.store.backend.put(
            self.catalog.store.root + WAN_PREFIX + dc, base.encode()
        )

    async def _load_wan(self) -> None:
        assert self.store is not None
        kvs, _ = await self.store.backend.range(self.store.root + WAN_PREFIX)
        for kv in kvs:
            self._remote[kv.key.rpartition("/")[2]] = kv.value.decode()

    async def _retry_join_wan(self, address: str) -> None:
        while True:
            try:
                await self.join_wan(address)
                return
            except SteppeError as exc:
                log.info("retry_join_wan %s: %s", address, exc)
                await asyncio.sleep(5)


async def _not_formed(request: web.Request) -> web.Response:
    """Until the store is formed nothing can be answered truthfully: a 404 here would
    tell a KV client that its key does not exist."""
    return web.Response(status=503, text="No cluster leader: the datacenter's store is forming\n")


def _get_json(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "PUT" else None)
    with urllib.request.urlopen(req, timeout=5) as response:
        return json.loads(response.read() or b"null")


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""
