"""Consul-compatible DNS: ``[tag.]name.service[.dc].consul``, ``node.node[.dc].consul``.

The server reads the catalog only through :class:`CatalogView`; the catalog implements it.

    config = parse_dns_config(agent_config_dict)
    server = DNSServer(view, config)
    await server.start()      # UDP + TCP on config.bind_address:config.port (8600)
    ...
    await server.stop()
"""

from steppe.dns._config import DNSConfig, parse_dns_config
from steppe.dns._server import DNSServer
from steppe.dns._view import CatalogView, NodeRecord, ServiceInstance, StaticCatalogView

__all__ = [
    "CatalogView",
    "DNSConfig",
    "DNSServer",
    "NodeRecord",
    "ServiceInstance",
    "StaticCatalogView",
    "parse_dns_config",
]
