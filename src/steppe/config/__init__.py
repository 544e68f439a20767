"""Agent configuration: HCL and JSON files with Nomad's and Consul's keys, merged into one
typed :class:`AgentConfig`; ``-dev`` defaults; command-line overrides.

Bad files raise :class:`~steppe.errors.ValidationError` listing every problem with its
file and line (``nomad.hcl:12: unknown key 'serverr' in top level; did you mean 'server'?``).
"""

from steppe.config._load import dev_config, load_config, load_config_text, merge, with_overrides
from steppe.config._model import (
    Addresses,
    Advertise,
    AgentConfig,
    ClientConfig,
    ConsulConfig,
    DnsConfig,
    DockerConfig,
    EtcdConfig,
    Ports,
    Reserved,
    ServerConfig,
    ServerJoin,
)

__all__ = [
    "Addresses",
    "Advertise",
    "AgentConfig",
    "ClientConfig",
    "ConsulConfig",
    "DnsConfig",
    "DockerConfig",
    "EtcdConfig",
    "Ports",
    "Reserved",
    "ServerConfig",
    "ServerJoin",
    "dev_config",
    "load_config",
    "load_config_text",
    "merge",
    "with_overrides",
]
