"""The scheduler client role: drivers, the node's fingerprint, and the client."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from steppe.agent._templates import template_hooks
from steppe.client import Client, ConsulAgentRegistrar, ServerAPI, fingerprint
from steppe.config import AgentConfig
from steppe.drivers import Driver
from steppe.drivers._docker import DockerDriver
from steppe.drivers._exec import ExecDriver
from steppe.drivers._raw_exec import RawExecDriver
from steppe.structs import NodeResources

log = logging.getLogger(__name__)


def build_drivers(config: AgentConfig, data_dir: Path) -> dict[str, Driver]:
    """``task_root`` lets the process drivers find their own orphans under this agent's
    allocation directories, and only there."""
    drivers: dict[str, Driver] = {}
    task_root = data_dir / "alloc"
    if config.driver_enabled("raw_exec"):
        drivers["raw_exec"] = RawExecDriver(enabled=True, task_root=task_root)
    if config.driver_enabled("exec"):
        drivers["exec"] = ExecDriver(task_root=task_root)
    if config.driver_enabled("docker"):
        drivers["docker"] = DockerDriver(config.docker_endpoint() or None)
    return drivers


def client_data_dir(config: AgentConfig) -> tuple[Path, bool]:
    """The client's directory, and whether it is a throwaway one (``-dev`` without a
    ``data_dir``) to remove at shutdown."""
    if config.data_dir:
        return Path(config.data_dir), False
    return Path(tempfile.mkdtemp(prefix="steppe-client-")), True


class ClientRole:
    def __init__(self, config: AgentConfig, server: ServerAPI, advertise_ip: str) -> None:
        self.config = config
        self.server = server
        self.advertise_ip = advertise_ip
        self.data_dir, self._throwaway = client_data_dir(config)
        self.drivers = build_drivers(config, self.data_dir)
        self.client: Client | None = None
        self.registrar: ConsulAgentRegistrar | None = None

    async def start(self, http_addr: str) -> None:
        cfg = self.config.client
        node = await fingerprint(
            data_dir=self.data_dir,
            drivers=self.drivers,
            advertise_ip=self.advertise_ip,
            datacenter=self.config.datacenter,
            name=self.config.node_name(),
            node_class=cfg.node_class,
            node_pool=cfg.node_pool,
            meta=cfg.meta,
            http_addr=http_addr,
            reserved=NodeResources(cpu=cfg.reserved.cpu, memory_mb=cfg.reserved.memory),
            min_dynamic_port=cfg.min_dynamic_port,
            max_dynamic_port=cfg.max_dynamic_port,
            now_ns=time.time_ns(),
        )
        self.registrar = ConsulAgentRegistrar(f"http://{self.config.consul.address}")
        self.client = Client(
            self.server,
            self.drivers,
            self.data_dir,
            node,
            services=self.registrar,
            templates=template_hooks(f"http://{self.config.consul.address}"),
        )
        await self.client.start()
        log.info(
            "client started: node %s (%s) with drivers %s", node.name, node.id, sorted(self.drivers)
        )

    async def stop(self, leave_running: bool) -> None:
        if self.client is not None:
            await self.client.stop(leave_running=leave_running)
        if self.registrar is not None:
            await self.registrar.aclose()
        for driver in self.drivers.values():
            if isinstance(driver, DockerDriver):
                await driver.aclose()
        if self._throwaway and not leave_running:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def alloc_dir(self, alloc_id: str) -> Path | None:
        path = self.data_dir / "alloc" / alloc_id
        return path if "/" not in alloc_id and path.is_dir() else None
