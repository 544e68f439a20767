"""In-process: an agent that stops heartbeating turns its node's serfHealth critical, which
invalidates the sessions tied to it and hides its services from DNS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.support.waiting import async_wait_until

from steppe.backend import MemoryBackend
from steppe.catalog import (
    CATALOG_TABLES,
    CatalogDNSView,
    CatalogServer,
    LocalAgent,
    SessionLimits,
    catalog_root,
    parse_session,
    reads,
)
from steppe.dns import CatalogView
from steppe.state import StateStore


@pytest.fixture
async def catalog() -> AsyncIterator[CatalogServer]:
    backend = MemoryBackend(lease_check_interval=0.02)
    store = StateStore(backend, CATALOG_TABLES, catalog_root("dc1"))
    await store.start()
    server = CatalogServer(store, "dc1", "server", session_limits=SessionLimits(min_ttl=0.1))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await store.stop()
        await backend.close()


async def test_stopped_agent_goes_critical_and_loses_sessions(catalog: CatalogServer) -> None:
    agent = LocalAgent(catalog, "n1", "10.0.0.1", heartbeat_ttl=0.2, sync_interval=0.2)
    await agent.start()
    try:
        await agent.register_service({"Name": "api", "Port": 9000, "Tags": ["blue"]})
        view = CatalogDNSView(catalog)
        assert isinstance(view, CatalogView)
        [inst] = view.service_instances("API", "BLUE", "DC1") or []
        assert (inst.address, inst.port, inst.node_address) == ("10.0.0.1", 9000, "10.0.0.1")
        assert (
            view.node("N1", "dc1") is not None and view.service_instances("api", None, "x") is None
        )
        sid = await catalog.sessions.create(parse_session({}, "n1", catalog.session_limits))
        await agent.stop()

        async def serf_critical() -> bool:
            check = reads.check(catalog.snapshot(), "n1", "serfHealth")
            return check is not None and check.status == "critical"

        await async_wait_until(serf_critical, what="serfHealth to go critical")
        await async_wait_until(
            lambda: catalog.snapshot().get("sessions", sid) is None,
            what="the node's session to be invalidated",
        )
        assert view.service_instances("api", None, "dc1") == []
    finally:
        await agent.stop()


async def test_deregister_critical_service_after(catalog: CatalogServer) -> None:
    agent = LocalAgent(catalog, "n2", "10.0.0.2", sync_interval=0.2)
    await agent.start()
    try:
        await agent.register_service(
            {
                "Name": "flaky",
                "Check": {
                    "TCP": "127.0.0.1:1",
                    "Interval": "20ms",
                    "DeregisterCriticalServiceAfter": "50ms",
                },
            }
        )
        await async_wait_until(
            lambda: not reads.service_nodes(catalog.snapshot(), "flaky"),
            what="the critical service to be reaped",
        )
        assert "flaky" not in agent.services()
    finally:
        await agent.stop()
