"""One agent process, its roles switched on by config.

Order matters where one role serves another: the catalog listens before anything
registers services into it; the scheduler's HTTP API listens before its store is
formed (other servers find it there); the in-process client starts once the server
it talks to has a store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

import msgspec
from aiohttp import web

from steppe import __version__
from steppe.agent._catalog_role import CatalogRole
from steppe.agent._client_role import ClientRole
from steppe.agent._consul_join import ConsulJoin
from steppe.agent._http import serve
from steppe.agent._proxy import build_forwarding_app
from steppe.agent._scheduler_role import SchedulerRole, advertise_ip
from steppe.api.nomad import cat_file, stream_logs
from steppe.backend import Backend, MemoryBackend
from steppe.client import ServerAPI
from steppe.config import AgentConfig, ConsulConfig
from steppe.errors import NotFoundError, SteppeError
from steppe.rpc import RemoteServerAPI, RPCServer, ServerEndpoint, with_default_port
from steppe.structs import to_builtins

log = logging.getLogger(__name__)


def with_local_catalog(config: AgentConfig) -> AgentConfig:
    """An agent running the catalog itself (``-dev``) registers into its own catalog,
    wherever that listens, unless the config names another one."""
    if not config.dev_mode or config.consul.address != ConsulConfig().address:
        return config
    host, port = config.catalog_http_bind()
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    consul = msgspec.structs.replace(config.consul, address=f"{host}:{port}")
    return msgspec.structs.replace(config, consul=consul)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        config = with_local_catalog(config)
        self.config = config
        self.started_at = time.time()
        self.shared_backend: Backend | None = MemoryBackend() if config.dev_mode else None
        self.scheduler: SchedulerRole | None = None
        self.client: ClientRole | None = None
        self.catalog: CatalogRole | None = None
        self._runners: list[web.AppRunner] = []
        self._joins: set[str] = set(config.server.join_addresses())
        self.consul_join = ConsulJoin(config)
        self.rpc: RPCServer | None = None
        self.remote: RemoteServerAPI | None = None

    @property
    def advertise_ip(self) -> str:
        return advertise_ip(self.config)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop(leave_running=True)
            raise

    async def _start(self) -> None:
        config = self.config
        if not config.dev_mode and config.server.enabled and not config.data_dir:
            raise SteppeError("a server needs data_dir (or -data-dir) to keep its state")
        if config.catalog_server or config.dev_mode:
            self.catalog = CatalogRole(config, self.shared_backend, self.advertise_ip)
            await self.catalog.start()
            self._runners.append(await serve(self.catalog.app(self), *config.catalog_http_bind()))
            await self.catalog.start_dns()
        server_api: ServerAPI | None = None
        if config.server.enabled:
            server_api = await self._start_server()
        if config.client.enabled:
            await self._start_client(server_api)
        log.info("agent started (%s)", ", ".join(self.roles()))

    async def _start_server(self) -> ServerAPI:
        config = self.config
        catalog_store = self.catalog.cluster if self.catalog is not None else None
        self.scheduler = SchedulerRole(
            config,
            join_addresses=lambda: self._joins,
            shared_backend=self.shared_backend,
            other_stores=[catalog_store] if catalog_store is not None else [],
        )
        self._runners.append(await serve(self.scheduler.app(), *config.http_bind()))
        if config.consul.server_auto_join and not config.dev_mode:
            self.consul_join.discover(config.consul.server_service_name, "http", self._joins.update)
        # registered before the store forms: the other servers find us in the catalog
        info = self.scheduler.info
        # no "serf" entry: Steppe has no gossip port, so its check could only fail
        ports = {"http": info.http_addr, "rpc": info.rpc_addr}
        self.consul_join.advertise(config.consul.server_service_name, info.name, ports)
        server = await self.scheduler.start(
            {"agent_self": self.agent_self, "alloc_dir": self._alloc_dir}
        )
        self.rpc = RPCServer(ServerEndpoint(server, peers=self.scheduler.peers), *config.rpc_bind())
        try:
            await self.rpc.start()
        except (OSError, SteppeError) as exc:
            if not config.dev_mode:
                raise SteppeError(f"cannot serve RPC on {config.rpc_bind()}: {exc}") from exc
            log.warning("dev agent: no RPC listener (%s); in-process clients only", exc)
            self.rpc = None
        return server

    async def _start_client(self, server_api: ServerAPI | None) -> None:
        config = self.config
        if server_api is None:
            configured = [
                with_default_port(a, 4647)
                for a in (
                    *config.client.servers,
                    *config.client.server_join.start_join,
                    *config.client.server_join.retry_join,
                )
            ]
            remote = RemoteServerAPI(configured)
            self.remote = remote
            if config.consul.client_auto_join:
                self.consul_join.discover(
                    config.consul.server_service_name,
                    "rpc",
                    lambda found: remote.set_servers(sorted(set(configured) | found)),
                )
            elif not configured:
                raise SteppeError(
                    "a client-only agent needs client { servers = [...] } or consul auto-join"
                )
            server_api = remote
            app = build_forwarding_app(
                self._server_http_addresses,
                {
                    "/v1/agent/self": self._agent_self_handler,
                    "/v1/client/fs/{kind:logs|cat}/{alloc_id}": self._local_files_handler,
                },
            )
            self._runners.append(await serve(app, *config.http_bind()))
        self.client = ClientRole(config, server_api, self.advertise_ip)
        _, port = config.http_bind()
        http_addr = f"{self.advertise_ip}:{port}"
        await self.client.start(http_addr)
        self.consul_join.advertise(
            config.consul.client_service_name, config.node_name(), {"http": http_addr}
        )

    def _server_http_addresses(self) -> list[str]:
        """Where a client-only agent sends API requests: servers found in the catalog,
        else the RPC servers' hosts on the HTTP port."""
        found = self.consul_join.found.get(f"{self.config.consul.server_service_name}/http")
        if found:
            return sorted(found)
        known = self.remote.known_servers if self.remote else []
        return [f"{a.rpartition(':')[0]}:{self.config.ports.http}" for a in known]

    async def _agent_self_handler(self, request: web.Request) -> web.Response:
        from steppe.api._http import json_response

        return json_response(self.agent_self())

    async def _local_files_handler(self, request: web.Request) -> web.StreamResponse:
        alloc_id = request.match_info["alloc_id"]
        alloc_dir = self._alloc_dir(alloc_id)
        if alloc_dir is None or self.client is None or self.client.client is None:
            raise NotFoundError(f"allocation {alloc_id} does not run on this node")
        if request.match_info["kind"] == "cat":
            return cat_file(request, alloc_dir)
        return await stream_logs(request, alloc_dir, self.client.client.allocation(alloc_id))

    async def stop(self, leave_running: bool | None = None, leave: bool | None = None) -> None:
        """``leave``: leave the cluster (default: ``leave_on_terminate``)."""
        if leave_running is None:
            leave_running = not self.config.dev_mode
        if leave is None:
            leave = self.config.leave_on_terminate
        if self.client is not None:
            await self.client.stop(leave_running)
        if self.remote is not None:
            await self.remote.close()
        await self.consul_join.stop()
        if self.rpc is not None:
            await self.rpc.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners = []
        if self.scheduler is not None:
            await self.scheduler.stop(leave=leave)
        if self.catalog is not None:
            await self.catalog.stop(leave=leave)
        if self.shared_backend is not None:
            await self.shared_backend.close()

    def roles(self) -> list[str]:
        roles = []
        if self.scheduler:
            roles.append("scheduler server")
        if self.client:
            roles.append("scheduler client")
        if self.catalog:
            roles.append("catalog")
        return roles

    # what the HTTP APIs report about this agent ----------------------------------------
    def agent_self(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"agent": {"uptime": f"{time.time() - self.started_at:.0f}s"}}
        member: dict[str, Any] = {}
        if self.client is not None and self.client.client is not None:
            known = self.remote.known_servers if self.remote else self._local_rpc()
            stats["client"] = {
                "node_id": self.client.client.node_id,
                "known_servers": ",".join(known),
                "num_allocations": str(len(self.client.client.runners)),
            }
        if self.scheduler is not None and self.scheduler.server is not None:
            server = self.scheduler.server
            stats["nomad"] = {
                "leader": str(server.is_leader).lower(),
                "server": "true",
                "leader_addr": server.leader_addr or "",
            }
            mine = [m for m in self.scheduler.members() if m["Name"] == server.info.name]
            member = mine[0] if mine else {}
        return {
            "config": to_builtins(self.config),
            "member": member,
            "stats": stats,
            "version": __version__,
        }

    def _local_rpc(self) -> list[str]:
        if self.scheduler is not None and self.scheduler.server is not None:
            return [self.scheduler.server.info.rpc_addr]
        return []

    def _alloc_dir(self, alloc_id: str) -> Any:
        return self.client.alloc_dir(alloc_id) if self.client else None


def settle_garbage_collector() -> None:
    """Everything built while starting lives as long as the agent: moving it out of the
    collector's sight, and collecting young objects less eagerly, keeps collections off
    the request path (DNS answers in tens of microseconds notice them)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def run_until_signalled(agent: Agent) -> None:
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    caught: list[int] = []

    def on_signal(sig: int) -> None:
        caught.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    starting = asyncio.ensure_future(agent.start())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([starting, stopped], return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        starting.result()
        settle_garbage_collector()
        print(f"==> Steppe agent started ({', '.join(agent.roles())})", flush=True)
        await stopped
    else:
        starting.cancel()
    print("==> Caught signal, shutting down", flush=True)
    interrupted = bool(caught) and caught[0] == signal.SIGINT
    config = agent.config
    await agent.stop(leave=config.leave_on_interrupt if interrupted else config.leave_on_terminate)
