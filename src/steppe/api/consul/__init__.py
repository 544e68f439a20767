"""The Consul-compatible HTTP API (port 8500): KV, txn, sessions, catalog, health, agent.

app = build_consul_app(catalog, agent, agent_info={...}, members=lambda: [...])
runner = web.AppRunner(app, handler_cancellation=True)   # blocking queries end with
                                                          # their client
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from steppe.api.consul import _agent, _catalog, _kv
from steppe.api.consul._common import CTX, ConsulContext, raft_server
from steppe.catalog import CatalogServer, LocalAgent


def build_consul_app(
    catalog: CatalogServer,
    agent: LocalAgent,
    *,
    agent_info: Mapping[str, Any] | None = None,
    members: Callable[[], list[dict[str, Any]]] | None = None,
    raft: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    wan_members: Callable[[], list[dict[str, Any]]] | None = None,
) -> web.Application:
    """``agent_info`` is merged into ``/v1/agent/self``'s ``Config``; ``members`` answers
    ``/v1/agent/members`` (default: this agent alone); ``raft`` gives the servers of the
    datacenter's store as ``/v1/operator/raft/configuration`` lists them (and with them
    ``/v1/status/leader`` and ``/peers``); ``wan_members`` answers ``members?wan=1``."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    ctx = ConsulContext(catalog, agent, dict(agent_info or {}), members, raft, wan_members)
    app[CTX] = ctx
    _kv.add_routes(app)
    _catalog.add_routes(app)
    _agent.add_routes(app)

    async def close_client(_app: web.Application) -> None:
        if ctx.client is not None:
            await ctx.client.close()

    app.on_cleanup.append(close_client)
    return app


__all__ = ["ConsulContext", "build_consul_app", "raft_server"]
