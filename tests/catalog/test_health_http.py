"""Agent services and checks over HTTP: a TCP check following a real listener, ?passing,
TTL checks, and anti-entropy repairing a catalog-side deregistration."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from tests.catalog.conftest import Agent, free_port
from tests.support.waiting import wait_until

Listener = tuple[int, list[socket.socket]]


@pytest.fixture
def listener() -> Iterator[Listener]:
    port = free_port()
    socks: list[socket.socket] = []
    try:
        yield port, socks
    finally:
        for s in socks:
            s.close()


def _listen(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def _passing_ids(agent: Agent, name: str) -> list[str]:
    return [e["Service"]["ID"] for e in agent.get(f"/v1/health/service/{name}?passing").json()]


def test_tcp_check_follows_listener(
    agent: Agent, listener: tuple[int, list[socket.socket]]
) -> None:
    port, socks = listener
    socks.append(_listen(port))
    body = {
        "ID": "web-1", "Name": "web", "Tags": ["v1"], "Address": "127.0.0.1", "Port": port,
        "Check": {"TCP": f"127.0.0.1:{port}", "Interval": "100ms", "Timeout": "1s"},
    }  # fmt: skip
    assert agent.put("/v1/agent/service/register", body).status == 200
    wait_until(lambda: _passing_ids(agent, "web") == ["web-1"], what="web-1 passing")
    [row] = agent.get("/v1/catalog/service/web").json()
    assert (row["ServiceAddress"], row["ServicePort"], row["ServiceTags"]) == (
        "127.0.0.1", port, ["v1"],
    )  # fmt: skip
    assert agent.get("/v1/catalog/services").json()["web"] == ["v1"]
    socks.pop().close()
    wait_until(lambda: _passing_ids(agent, "web") == [], what="web-1 to go critical")
    [entry] = agent.get("/v1/health/service/web").json()
    statuses = {c["CheckID"]: c["Status"] for c in entry["Checks"]}
    assert statuses == {"serfHealth": "passing", "service:web-1": "critical"}
    critical = agent.get("/v1/health/state/critical").json()
    assert [c["ServiceName"] for c in critical] == ["web"]
    socks.append(_listen(port))
    wait_until(lambda: _passing_ids(agent, "web") == ["web-1"], what="web-1 passing again")
    assert agent.put("/v1/agent/service/deregister/web-1").status == 200
    assert agent.get("/v1/catalog/service/web").json() == []
    assert agent.get("/v1/agent/checks").json().keys() == {"serfHealth"}


def test_ttl_check_and_status_updates(agent: Agent) -> None:
    body = {"Name": "worker", "Port": 1, "Check": {"TTL": "30s", "CheckID": "worker-ttl"}}
    agent.put("/v1/agent/service/register", body)
    assert _passing_ids(agent, "worker") == []
    assert agent.put("/v1/agent/check/pass/worker-ttl?note=ok").status == 200
    assert _passing_ids(agent, "worker") == ["worker"]
    checks = agent.get("/v1/health/checks/worker").json()
    assert [(c["CheckID"], c["Status"], c["Output"]) for c in checks] == [
        ("worker-ttl", "passing", "ok"),
    ]
    assert agent.put("/v1/agent/check/update/worker-ttl", {"Status": "warning"}).status == 200
    assert agent.get("/v1/agent/checks").json()["worker-ttl"]["Status"] == "warning"
    assert agent.put("/v1/agent/check/fail/nope").status == 404
    agent.put("/v1/agent/service/deregister/worker")


def test_script_check(agent: Agent) -> None:
    body = {"Name": "scripted", "Check": {"Args": ["sh", "-c", "exit 1"], "Interval": "100ms"}}
    agent.put("/v1/agent/service/register", body)
    wait_until(
        lambda: agent.get("/v1/agent/checks").json()["service:scripted"]["Status"] == "warning",
        what="the script check's exit 1 to read as warning",
    )
    agent.put("/v1/agent/service/deregister/scripted")


def test_anti_entropy_repairs_catalog_drift(agent: Agent) -> None:
    agent.put("/v1/agent/service/register", {"Name": "db", "Port": 5432})
    assert len(agent.get("/v1/catalog/service/db").json()) == 1
    gone = agent.put("/v1/catalog/deregister", {"Node": "dev", "ServiceID": "db"})
    assert gone.status == 200
    wait_until(
        lambda: len(agent.get("/v1/catalog/service/db").json()) == 1,
        what="the agent to re-register db",
    )
    agent.put("/v1/agent/service/deregister/db")


def test_catalog_register_external_node(agent: Agent) -> None:
    body = {
        "Node": "ext", "Address": "10.1.2.3",
        "Service": {"Service": "legacy", "Port": 80, "Tags": ["x"]},
        "Check": {"CheckID": "legacy-alive", "Status": "passing", "ServiceID": "legacy"},
    }  # fmt: skip
    assert agent.put("/v1/catalog/register", body).json() is True
    assert [n["Node"] for n in agent.get("/v1/catalog/nodes").json()] == ["dev", "ext"]
    node = agent.get("/v1/catalog/node/ext").json()
    assert node["Node"]["Address"] == "10.1.2.3" and "legacy" in node["Services"]
    assert [c["CheckID"] for c in agent.get("/v1/health/node/ext").json()] == ["legacy-alive"]
    assert agent.get("/v1/health/service/legacy?passing&tag=x").json()[0]["Node"]["Node"] == "ext"
    assert agent.put("/v1/catalog/deregister", {"Node": "ext"}).json() is True
    assert agent.get("/v1/catalog/node/ext").json() is None


def test_agent_self_members_status(agent: Agent) -> None:
    me = agent.get("/v1/agent/self").json()
    assert me["Config"]["Datacenter"] == "dc1" and me["Config"]["NodeName"] == "dev"
    assert [m["Name"] for m in agent.get("/v1/agent/members").json()] == ["dev"]
    assert isinstance(agent.get("/v1/status/leader").json(), str)
    assert len(agent.get("/v1/status/peers").json()) == 1
