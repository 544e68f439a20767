"""The seed's ``consul {}`` block: an agent advertises itself in the catalog
(``auto_advertise``: services ``nomad`` and ``nomad-client``) and finds the region's
servers there (``server_auto_join``, ``client_auto_join``).

The catalog may come up after the agent, or restart and forget it, so both
directions retry forever in the background and registrations are renewed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

from steppe._tasks import cancel_all
from steppe.client import CheckRegistration, ConsulAgentRegistrar, ServiceRegistration
from steppe.config import AgentConfig
from steppe.errors import SteppeError

log = logging.getLogger(__name__)
RENEW_EVERY = 30.0
DISCOVER_EVERY = 2.0


class ConsulJoin:
    def __init__(self, config: AgentConfig) -> None:
        self.consul = config.consul
        self.base_url = f"http://{config.consul.address}"
        self.registrar = ConsulAgentRegistrar(self.base_url, token=config.consul.token)
        self._tasks: list[asyncio.Task[None]] = []
        self.found: dict[str, set[str]] = {}

    def advertise(self, service: str, owner: str, ports: dict[str, str]) -> None:
        """Keeps ``service`` registered once per tagged port (``http``, ``rpc``, ``serf``),
        each with a TCP check, as Nomad registers itself."""
        if not self.consul.auto_advertise:
            return
        registrations = []
        for tag, addr in ports.items():
            host, _, port = addr.rpartition(":")
            registrations.append(
                ServiceRegistration(
                    id=f"_nomad-{service}-{owner}-{tag}",
                    name=service,
                    tags=[tag],
                    address=host,
                    port=int(port),
                    checks=[
                        CheckRegistration(
                            name=f"{service} {tag} port", tcp=addr, interval="10s", timeout="2s"
                        )
                    ],
                )
            )
        self._tasks.append(asyncio.ensure_future(self._keep_registered(registrations)))

    async def _keep_registered(self, registrations: list[ServiceRegistration]) -> None:
        while True:
            try:
                for registration in registrations:
                    await self.registrar.register(registration)
                await asyncio.sleep(RENEW_EVERY)
            except SteppeError as exc:
                log.debug("auto-advertise: %s", exc)
                await asyncio.sleep(DISCOVER_EVERY)

    def discover(self, service: str, tag: str, on_change: Callable[[set[str]], None]) -> None:
        """Follows ``service``'s ``tag`` addresses in the catalog; calls ``on_change``."""
        self._tasks.append(asyncio.ensure_future(self._follow(service, tag, on_change)))

    async def _follow(self, service: str, tag: str, on_change: Callable[[set[str]], None]) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    found = await self._lookup(session, service, tag)
                    if found != self.found.get(f"{service}/{tag}"):
                        self.found[f"{service}/{tag}"] = found
                        on_change(found)
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                    log.debug("auto-join: catalog at %s: %s", self.base_url, exc)
                await asyncio.sleep(DISCOVER_EVERY)

    async def _lookup(self, session: aiohttp.ClientSession, service: str, tag: str) -> set[str]:
        """The service's addresses in every datacenter the catalog knows, as Nomad looks:
        a region's servers span datacenters, each registered in its own datacenter's
        catalog. A datacenter that cannot be reached just adds nothing."""
        async with session.get(f"{self.base_url}/v1/catalog/datacenters") as response:
            dcs = await response.json() if response.status == 200 else []
        url = f"{self.base_url}/v1/catalog/service/{service}"
        found: set[str] = set()
        for dc in dcs or [""]:
            params = {"tag": tag, **({"dc": dc} if dc else {})}
            try:
                async with session.get(url, params=params) as response:
                    entries = await response.json() if response.status == 200 else []
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.debug("auto-join: datacenter %s: %s", dc, exc)
                continue
            found |= {
                f"{e.get('ServiceAddress') or e['Address']}:{e['ServicePort']}" for e in entries
            }
        return found

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        await self.registrar.aclose()
