"""KV over HTTP against a real dev server process: the seed's curl lines, CAS, blocking
queries, txn atomicity, and malformed requests that must change nothing."""

from __future__ import annotations

import base64
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.catalog.conftest import Agent


def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-s", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def test_seed_curl_lines(agent: Agent) -> None:
    base = f"localhost:{agent.port}"
    assert curl(f"{base}/v1/catalog/datacenters") == '["dc1"]'
    assert curl("-X", "PUT", "-d", "myvalue", f"{base}/v1/kv/mykey") == "true"
    [entry] = __import__("json").loads(curl(f"{base}/v1/kv/mykey"))
    assert entry["Key"] == "mykey"
    assert base64.b64decode(entry["Value"]) == b"myvalue"
    assert entry["CreateIndex"] == entry["ModifyIndex"] > 0
    assert {"LockIndex", "Flags"} <= entry.keys() and "Session" not in entry
    assert curl(f"{base}/v1/kv/mykey?dc=dc1").startswith("[")
    assert "No path to datacenter" in curl(f"{base}/v1/kv/mykey?dc=lon1")


def test_get_variants(agent: Agent) -> None:
    for key in ("app/a", "app/b/c", "app/b/d", "other"):
        assert agent.put(f"/v1/kv/{key}?flags=42", key.encode()).json() is True
    assert agent.get("/v1/kv/app/a?raw").body == b"app/a"
    assert agent.get("/v1/kv/app/a").json()[0]["Flags"] == 42
    assert [e["Key"] for e in agent.get("/v1/kv/app/?recurse").json()] == [
        "app/a", "app/b/c", "app/b/d",
    ]  # fmt: skip
    assert agent.get("/v1/kv/app/?keys&separator=/").json() == ["app/a", "app/b/"]
    missing = agent.get("/v1/kv/app/zzz")
    assert missing.status == 404 and int(missing.headers["X-Consul-Index"]) > 0
    assert agent.call("DELETE", "/v1/kv/app/b?recurse").json() is True
    assert agent.get("/v1/kv/app/?keys").json() == ["app/a"]
    index = agent.get("/v1/kv/app/a").json()[0]["ModifyIndex"]
    assert agent.call("DELETE", f"/v1/kv/app/a?cas={index + 1000}").json() is False
    assert agent.call("DELETE", f"/v1/kv/app/a?cas={index}").json() is True
    assert agent.get("/v1/kv/app/a").status == 404


def test_cas_race_between_two_writers_has_one_winner(agent: Agent) -> None:
    agent.put("/v1/kv/race", "start")
    for round_ in range(5):
        index = agent.get("/v1/kv/race").json()[0]["ModifyIndex"]
        barrier = threading.Barrier(2)

        def write(who: str, index: int = index, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return bool(agent.put(f"/v1/kv/race?cas={index}", who).json())

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(write, [f"a{round_}", f"b{round_}"]))
        assert sorted(results) == [False, True]
        winner = [f"a{round_}", f"b{round_}"][results.index(True)]
        assert agent.get("/v1/kv/race?raw").body.decode() == winner
    assert agent.put("/v1/kv/fresh?cas=0", "1").json() is True
    assert agent.put("/v1/kv/fresh?cas=0", "2").json() is False


def test_blocking_query_wakes_on_change(agent: Agent) -> None:
    agent.put("/v1/kv/watched", "v1")
    first = agent.get("/v1/kv/watched")
    index = int(first.headers["X-Consul-Index"])
    assert first.headers["X-Consul-KnownLeader"] == "true"
    assert "X-Consul-LastContact" in first.headers
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(agent.get, f"/v1/kv/watched?index={index}&wait=30s")
        agent.put("/v1/kv/unrelated", "x")
        agent.put("/v1/kv/watched", "v2")
        reply = pending.result(timeout=30)
    assert int(reply.headers["X-Consul-Index"]) > index
    assert base64.b64decode(reply.json()[0]["Value"]) == b"v2"
    stale = agent.get(f"/v1/kv/watched?index={index}&wait=10ms&stale")
    assert stale.status == 200
    assert agent.get("/v1/kv/watched?consistent").status == 200


def test_txn_is_all_or_nothing(agent: Agent) -> None:
    value = base64.b64encode(b"t").decode()
    ops = [
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": value}},
        {"KV": {"Verb": "check-not-exists", "Key": "txn/a-never"}},
        {"KV": {"Verb": "get", "Key": "txn/does-not-exist"}},
    ]
    failed = agent.put("/v1/txn", ops)
    assert failed.status == 409
    assert failed.json()["Errors"][0]["OpIndex"] == 2
    assert agent.get("/v1/kv/txn/a").status == 404
    ok = agent.put("/v1/txn", [*ops[:2], {"KV": {"Verb": "set", "Key": "txn/b", "Value": value}}])
    assert ok.status == 200
    assert [r["KV"]["Key"] for r in ok.json()["Results"]] == ["txn/a", "txn/b"]
    assert agent.get("/v1/kv/txn/?keys").json() == ["txn/a", "txn/b"]
    too_many = [{"KV": {"Verb": "set", "Key": f"txn/m{i}", "Value": value}} for i in range(65)]
    assert agent.put("/v1/txn", too_many).status == 413


def test_malformed_requests_are_4xx_and_change_nothing(agent: Agent) -> None:
    agent.put("/v1/kv/guard", "orig")
    before = agent.get("/v1/kv/?recurse").body
    services_before = agent.get("/v1/agent/services").body
    cases = [
        ("GET", "/v1/kv/guard?index=abc", None),
        ("GET", "/v1/kv/guard?index=1&wait=forever", None),
        ("PUT", "/v1/kv/guard?flags=-1", "x"),
        ("PUT", "/v1/kv/guard?cas=notanumber", "x"),
        ("PUT", "/v1/kv/guard", b"v" * (512 * 1024 + 1)),
        ("PUT", "/v1/txn", "{not json"),
        ("PUT", "/v1/txn", [{"KV": {"Verb": "explode", "Key": "guard"}}]),
        ("PUT", "/v1/agent/service/register", "{bad json"),
        ("PUT", "/v1/agent/service/register", {"Name": "x", "Check": {"TCP": "127.0.0.1:1"}}),
        ("PUT", "/v1/agent/service/register", {"Name": "x", "Port": "eighty"}),
        ("PUT", "/v1/agent/check/register", {"Name": "c", "TTL": "-5s"}),
        ("PUT", "/v1/session/create", {"TTL": "-10s"}),
        ("PUT", "/v1/session/create", {"Behavior": "explode"}),
        ("PUT", "/v1/catalog/register", {"Node": "n-without-address"}),
        ("GET", "/v1/health/state/sunny", None),
        ("PUT", "/v1/kv/guard?acquire=no-such-session", "stolen"),
    ]
    for method, path, body in cases:
        reply = agent.call(method, path, body)
        assert 400 <= reply.status < 500, (path, reply.status, reply.body)
        assert reply.body.strip(), f"{path}: an error needs a message"
    assert agent.get("/v1/kv/?recurse").body == before
    assert agent.get("/v1/agent/services").body == services_before
    assert agent.get("/v1/session/list").json() == []
