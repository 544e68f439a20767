"""The scheduler server role: the region's state store, the server, and Nomad's API."""

from __future__ import annotations

import socket
import time
from typing import Any

from aiohttp import web

from steppe import __version__
from steppe.api.nomad import NomadAPI, build_nomad_app
from steppe.backend import Backend
from steppe.config import AgentConfig
from steppe.server import Server, ServerInfo
from steppe.state import SCHEDULER_TABLES, StateStore


def region_root(region: str) -> str:
    return f"/steppe/region/{region}/"


def server_info(config: AgentConfig) -> ServerInfo:
    host = config.advertise_addr or _routable(config.bind_addr)
    rpc = config.advertise.rpc or f"{host}:{config.ports.rpc}"
    http = config.advertise.http or f"{host}:{config.ports.http}"
    return ServerInfo(
        name=f"{config.node_name()}.{config.region}",
        region=config.region,
        datacenter=config.datacenter,
        rpc_addr=rpc,
        http_addr=http,
    )


def _routable(bind: str) -> str:
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
        return "127.0.0.1"


class SchedulerRole:
    def __init__(self, config: AgentConfig, backend: Backend) -> None:
        self.config = config
        self.store = StateStore(backend, SCHEDULER_TABLES, root=region_root(config.region))
        workers = config.server.num_schedulers or 2
        self.server = Server(self.store, server_info(config), workers=workers)
        self.started_at = time.time()

    async def start(self) -> None:
        await self.store.start()

    async def stop(self) -> None:
        await self.server.stop()
        await self.store.stop()

    def member(self) -> dict[str, Any]:
        info = self.server.info
        host, _, port = info.rpc_addr.rpartition(":")
        return {
            "Name": info.name,
            "Addr": host,
            "Port": int(port or 4648),
            "Status": "alive",
            "Tags": {
                "region": info.region,
                "dc": info.datacenter,
                "role": "nomad",
                "build": __version__,
                "leader": "true" if self.server.is_leader else "false",
                "rpc_addr": host,
                "port": port,
                "expect": str(self.config.server.bootstrap_expect),
            },
            "ProtocolCur": 2,
            "DelegateCur": 4,
        }

    def app(self, agent_self: Any, alloc_dir: Any, members: Any, peers: Any) -> web.Application:
        api = NomadAPI(
            server=self.server,
            agent_self=agent_self,
            members=members,
            peers=peers,
            alloc_dir=alloc_dir,
        )
        return build_nomad_app(api)
