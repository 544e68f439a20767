"""Client nodes as the servers see them: Nomad's ``api.Node``."""

from __future__ import annotations

import msgspec

from steppe.structs._job import Base, NetworkResource
from steppe.structs._naming import nomad_names

NODE_STATUS_INIT = "initializing"
NODE_STATUS_READY = "ready"
NODE_STATUS_DOWN = "down"
NODE_STATUS_DISCONNECTED = "disconnected"


class DriverInfo(Base, frozen=True):
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    detected: bool = False
    healthy: bool = False
    health_description: str = ""
    update_time: int = 0


class NodeResources(Base, frozen=True):
    """Totals the node offers (Nomad's legacy ``Resources`` / ``Reserved`` shape)."""

    cpu: int = 0
    memory_mb: int = 0
    disk_mb: int = 0
    networks: tuple[NetworkResource, ...] = ()


class Node(Base, frozen=True, rename=nomad_names(http_addr="HTTPAddr", tls_enabled="TLSEnabled")):
    id: str = ""
    secret_id: str = ""
    name: str = ""
    datacenter: str = "dc1"
    node_class: str = ""
    node_pool: str = "default"
    http_addr: str = ""
    tls_enabled: bool = False
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    drivers: dict[str, DriverInfo] = msgspec.field(default_factory=dict)
    resources: NodeResources = msgspec.field(default_factory=NodeResources)
    reserved: NodeResources = msgspec.field(default_factory=NodeResources)
    min_dynamic_port: int = 20000
    max_dynamic_port: int = 32000
    status: str = NODE_STATUS_INIT
    status_description: str = ""
    status_updated_at: int = 0
    scheduling_eligibility: str = "eligible"
    drain: bool = False
    create_index: int = 0
    modify_index: int = 0

    @property
    def address(self) -> str:
        """The address allocations on this node are reached at."""
        for net in self.resources.networks:
            if net.ip:
                return net.ip
        return self.attributes.get("unique.network.ip-address", "127.0.0.1")

    @property
    def ready(self) -> bool:
        return (
            self.status == NODE_STATUS_READY
            and self.scheduling_eligibility == "eligible"
            and not self.drain
        )
