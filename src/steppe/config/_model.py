"""The agent's configuration, typed, with Nomad's and Consul's defaults.

One agent plays Nomad's and Consul's roles, so the model holds both vocabularies:
``server { enabled }`` is the scheduler server (Nomad), top-level ``server = true`` is the
catalog server (Consul, kept as ``catalog_server``). Field names are the config-file keys.
"""

from __future__ import annotations

import socket
from typing import Any

import msgspec

from steppe.structs import NS


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Advertise(_Base, frozen=True):
    http: str = ""
    rpc: str = ""
    serf: str = ""


class Ports(_Base, frozen=True):
    """Scheduler ports (Nomad's) and catalog ports (Consul's); ``catalog_http`` is ours,
    because both products call their HTTP port ``http``."""

    http: int = 4646
    rpc: int = 4647
    serf: int = 4648
    catalog_http: int = 8500
    dns: int = 8600
    server: int = 8300
    serf_lan: int = 8301
    serf_wan: int = 8302
    etcd_client: int = 4649
    etcd_peer: int = 4650
    catalog_etcd_client: int = 8303
    catalog_etcd_peer: int = 8304


class Addresses(_Base, frozen=True):
    http: str = ""
    rpc: str = ""
    serf: str = ""
    dns: str = ""


class ServerJoin(_Base, frozen=True):
    retry_join: tuple[str, ...] = ()
    start_join: tuple[str, ...] = ()
    retry_max: int = 0
    retry_interval: int = 30 * NS


class ServerConfig(_Base, frozen=True):
    enabled: bool = False
    bootstrap_expect: int = 0
    data_dir: str = ""
    retry_join: tuple[str, ...] = ()
    start_join: tuple[str, ...] = ()
    retry_max: int = 0
    retry_interval: int = 30 * NS
    num_schedulers: int = 0
    heartbeat_grace: int = 10 * NS
    server_join: ServerJoin = msgspec.field(default_factory=ServerJoin)

    def join_addresses(self) -> tuple[str, ...]:
        """Every address to try joining, from both spellings Nomad accepts."""
        found = (
            *self.start_join,
            *self.retry_join,
            *self.server_join.start_join,
            *self.server_join.retry_join,
        )
        return tuple(dict.fromkeys(found))


class Reserved(_Base, frozen=True):
    cpu: int = 0
    memory: int = 0
    disk: int = 0
    reserved_ports: str = ""


class ClientConfig(_Base, frozen=True):
    enabled: bool = False
    servers: tuple[str, ...] = ()
    node_class: str = ""
    node_pool: str = "default"
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    options: dict[str, str] = msgspec.field(default_factory=dict)
    network_interface: str = ""
    cpu_total_compute: int = 0
    memory_total_mb: int = 0
    state_dir: str = ""
    alloc_dir: str = ""
    min_dynamic_port: int = 20000
    max_dynamic_port: int = 32000
    reserved: Reserved = msgspec.field(default_factory=Reserved)
    server_join: ServerJoin = msgspec.field(default_factory=ServerJoin)


class ConsulConfig(_Base, frozen=True):
    address: str = "127.0.0.1:8500"
    server_service_name: str = "nomad"
    server_auto_join: bool = True
    client_service_name: str = "nomad-client"
    client_auto_join: bool = True
    auto_advertise: bool = True
    token: str = ""


class DockerConfig(_Base, frozen=True):
    endpoint: str = ""


class EtcdConfig(_Base, frozen=True):
    endpoints: tuple[str, ...] = ()


class DnsConfig(_Base, frozen=True):
    """Consul's ``dns_config``; ``service_ttl`` maps service names (``*`` for all) to TTLs."""

    node_ttl: int = 0
    service_ttl: dict[str, int] = msgspec.field(default_factory=dict)
    allow_stale: bool = True
    max_stale: int = 10 * 365 * 24 * 3600 * NS
    udp_answer_limit: int = 3
    enable_truncate: bool = False
    only_passing: bool = False

    def ttl_for(self, service: str) -> int:
        if service in self.service_ttl:
            return self.service_ttl[service]
        return self.service_ttl.get("*", 0)


class AgentConfig(_Base, frozen=True):
    datacenter: str = "dc1"
    region: str = "global"
    data_dir: str = ""
    log_level: str = "INFO"
    name: str = ""
    bind_addr: str = "0.0.0.0"
    client_addr: str = "127.0.0.1"
    advertise: Advertise = msgspec.field(default_factory=Advertise)
    advertise_addr: str = ""
    advertise_addr_wan: str = ""
    leave_on_interrupt: bool = False
    """Leave the cluster on SIGINT (servers leave their stores, agents the catalog)."""
    leave_on_terminate: bool = False
    """Likewise on SIGTERM."""
    enable_script_checks: bool = False
    disable_update_check: bool = False
    ports: Ports = msgspec.field(default_factory=Ports)
    addresses: Addresses = msgspec.field(default_factory=Addresses)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    catalog_server: bool = False
    bootstrap_expect: int = 0
    retry_join: tuple[str, ...] = ()
    retry_join_wan: tuple[str, ...] = ()
    start_join: tuple[str, ...] = ()
    start_join_wan: tuple[str, ...] = ()
    client: ClientConfig = msgspec.field(default_factory=ClientConfig)
    consul: ConsulConfig = msgspec.field(default_factory=ConsulConfig)
    plugins: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    docker: DockerConfig = msgspec.field(default_factory=DockerConfig)
    etcd: EtcdConfig = msgspec.field(default_factory=EtcdConfig)
    dns_config: DnsConfig = msgspec.field(default_factory=DnsConfig)
    recursors: tuple[str, ...] = ()
    domain: str = "consul."
    ui: bool = False
    dev_mode: bool = False

    def node_name(self) -> str:
        return self.name or socket.gethostname()

    def http_bind(self) -> tuple[str, int]:
        """Where the scheduler API (Nomad's, 4646) listens."""
        return (self.addresses.http or self.bind_addr, self.ports.http)

    def rpc_bind(self) -> tuple[str, int]:
        return (self.addresses.rpc or self.bind_addr, self.ports.rpc)

    def serf_bind(self) -> tuple[str, int]:
        return (self.addresses.serf or self.bind_addr, self.ports.serf)

    def catalog_http_bind(self) -> tuple[str, int]:
        """Where the catalog API (Consul's, 8500) listens: Consul binds it to client_addr."""
        return (self.client_addr, self.ports.catalog_http)

    def dns_bind(self) -> tuple[str, int]:
        return (self.addresses.dns or self.client_addr, self.ports.dns)

    def advertised_http(self) -> str:
        """The scheduler HTTP address other agents should use."""
        if self.advertise.http:
            return self.advertise.http
        host = self.advertise_addr or self.http_bind()[0]
        return f"{host}:{self.ports.http}"

    def plugin_config(self, name: str) -> dict[str, Any]:
        return self.plugins.get(name, {})

    def driver_enabled(self, name: str) -> bool:
        """raw_exec is off unless enabled, as in Nomad; other drivers are on unless disabled."""
        enabled = self.plugin_config(name).get("enabled")
        option = self.client.options.get(f"driver.{name}.enable")
        if name == "raw_exec":
            return enabled is True or option in ("1", "true")
        return enabled is not False and option not in ("0", "false")

    def docker_endpoint(self) -> str:
        """``plugin "docker" { config { endpoint } }`` or ``docker { endpoint }``; empty means
        DOCKER_HOST or the default socket."""
        endpoint = self.plugin_config("docker").get("endpoint")
        return str(endpoint) if endpoint else self.docker.endpoint
