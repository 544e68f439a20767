"""One agent process, its roles switched on by config.

Start order matters only where one role serves another: the catalog listens before
the client registers services into it, and the scheduler server leads before the
in-process client registers its node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from steppe import __version__
from steppe.agent._client_role import ClientRole
from steppe.agent._http import serve
from steppe.agent._scheduler_role import SchedulerRole, server_info
from steppe.backend import Backend, MemoryBackend
from steppe.config import AgentConfig
from steppe.errors import SteppeError

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self.backend: Backend | None = None
        self.scheduler: SchedulerRole | None = None
        self.client: ClientRole | None = None
        self.catalog: Any = None
        self._runners: list[web.AppRunner] = []

    @property
    def advertise_ip(self) -> str:
        return server_info(self.config).rpc_addr.rpartition(":")[0]

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        if not config.dev_mode:
            raise SteppeError(
                "only -dev agents are supported by this build; a server needs an etcd backend"
            )
        self.backend = MemoryBackend()
        if (config.catalog_server or config.dev_mode) and _catalog_available():
            from steppe.agent._catalog_role import CatalogRole

            self.catalog = CatalogRole(config, self.backend, self.advertise_ip)
            await self.catalog.start()
            self._runners.append(await serve(self.catalog.app(self), *config.catalog_http_bind()))
            await self.catalog.start_dns()
        if config.server.enabled:
            self.scheduler = SchedulerRole(config, self.backend)
            await self.scheduler.start()
            await self.scheduler.server.start_leading()
        if self.scheduler is not None:
            app = self.scheduler.app(self.agent_self, self._alloc_dir, self._members, self._peers)
            self._runners.append(await serve(app, *config.http_bind()))
        if config.client.enabled and self.scheduler is not None:
            self.client = ClientRole(config, self.scheduler.server, self.advertise_ip)
            host, port = config.http_bind()
            await self.client.start(f"{self.advertise_ip}:{port}")
        log.info("agent started (%s)", ", ".join(self.roles()))

    async def stop(self, leave_running: bool | None = None) -> None:
        if leave_running is None:
            leave_running = not self.config.dev_mode
        if self.client is not None:
            await self.client.stop(leave_running)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners = []
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.catalog is not None:
            await self.catalog.stop()
        if self.backend is not None:
            await self.backend.close()

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
        from steppe.structs import to_builtins

        stats: dict[str, Any] = {"agent": {"uptime": f"{time.time() - self.started_at:.0f}s"}}
        if self.client is not None and self.client.client is not None:
            stats["client"] = {
                "node_id": self.client.client.node_id,
                "known_servers": self.scheduler.server.info.rpc_addr if self.scheduler else "",
                "num_allocations": str(len(self.client.client.runners)),
            }
        if self.scheduler is not None:
            stats["nomad"] = {
                "leader": str(self.scheduler.server.is_leader).lower(),
                "server": "true",
                "leader_addr": self.scheduler.server.leader_addr or "",
            }
        return {
            "config": to_builtins(self.config),
            "member": self._members()[0] if self._members() else {},
            "stats": stats,
            "version": __version__,
        }

    def _members(self) -> list[dict[str, Any]]:
        return [self.scheduler.member()] if self.scheduler else []

    def _peers(self) -> list[str]:
        return [self.scheduler.server.info.rpc_addr] if self.scheduler else []

    def _alloc_dir(self, alloc_id: str) -> Any:
        return self.client.alloc_dir(alloc_id) if self.client else None


def _catalog_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("steppe.agent._catalog_role") is not None


async def run_until_signalled(agent: Agent) -> None:
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    print(f"==> Steppe agent started ({', '.join(agent.roles())})", flush=True)
    await stop.wait()
    print("==> Caught signal, shutting down", flush=True)
    await agent.stop()
