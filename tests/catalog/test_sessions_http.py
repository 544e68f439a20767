"""Sessions and locks over HTTP: released on destroy, released (or deleted) on TTL lapse."""

from __future__ import annotations

from tests.catalog.conftest import Agent
from tests.support.waiting import wait_until


def _session(agent: Agent, **body: object) -> str:
    reply = agent.put("/v1/session/create", {"LockDelay": "0s", **body})
    assert reply.status == 200, reply.body
    return str(reply.json()["ID"])


def test_lock_released_when_session_destroyed(agent: Agent) -> None:
    first, second = _session(agent, Name="a"), _session(agent, Name="b")
    assert agent.put(f"/v1/kv/locks/leader?acquire={first}", "a").json() is True
    assert agent.put(f"/v1/kv/locks/leader?acquire={second}", "b").json() is False
    held = agent.get("/v1/kv/locks/leader").json()[0]
    assert held["Session"] == first and held["LockIndex"] == 1
    assert agent.put(f"/v1/kv/locks/leader?release={second}", "b").json() is False
    assert agent.put(f"/v1/session/destroy/{first}").json() is True
    freed = agent.get("/v1/kv/locks/leader").json()[0]
    assert "Session" not in freed and freed["LockIndex"] == 1
    assert agent.put(f"/v1/kv/locks/leader?acquire={second}", "b").json() is True
    assert agent.get("/v1/kv/locks/leader").json()[0]["LockIndex"] == 2
    assert agent.put(f"/v1/kv/locks/leader?release={second}", "b").json() is True
    info = agent.get(f"/v1/session/info/{second}").json()
    assert info[0]["ID"] == second and info[0]["NodeChecks"] == ["serfHealth"]
    assert agent.get(f"/v1/session/info/{first}").json() == []


def test_lock_released_when_ttl_lapses(agent: Agent) -> None:
    sid = _session(agent, TTL="0.3s")
    assert agent.put(f"/v1/kv/locks/ttl?acquire={sid}", "x").json() is True
    renewed = agent.put(f"/v1/session/renew/{sid}")
    assert renewed.status == 200 and renewed.json()[0]["TTL"] == "0.3s"
    wait_until(
        lambda: "Session" not in agent.get("/v1/kv/locks/ttl").json()[0],
        what="the lock to be released after the session's TTL lapsed",
    )
    assert agent.get(f"/v1/session/info/{sid}").json() == []
    assert agent.put(f"/v1/session/renew/{sid}").status == 404


def test_delete_behavior_removes_keys(agent: Agent) -> None:
    sid = _session(agent, TTL="0.3s", Behavior="delete")
    assert agent.put(f"/v1/kv/locks/ephemeral?acquire={sid}", "x").json() is True
    wait_until(
        lambda: agent.get("/v1/kv/locks/ephemeral").status == 404,
        what="the key to be deleted with its session",
    )


def test_lock_delay_blocks_reacquire(agent: Agent) -> None:
    first = _session(agent, LockDelay="60s")
    second = _session(agent)
    assert agent.put(f"/v1/kv/locks/delayed?acquire={first}", "x").json() is True
    agent.put(f"/v1/session/destroy/{first}")
    assert agent.put(f"/v1/kv/locks/delayed?acquire={second}", "y").json() is False


def test_txn_lock_and_check_session(agent: Agent) -> None:
    sid = _session(agent)
    ops = [
        {"KV": {"Verb": "lock", "Key": "locks/txn", "Session": sid}},
        {"KV": {"Verb": "check-session", "Key": "locks/txn", "Session": sid}},
    ]
    reply = agent.put("/v1/txn", ops)
    assert reply.status == 200, reply.body
    assert agent.get("/v1/kv/locks/txn").json()[0]["Session"] == sid
    assert [s["ID"] for s in agent.get("/v1/session/node/dev").json()].count(sid) == 1
