"""The consul-style CLI commands, run as real processes against the dev server."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.catalog.conftest import SRC, Agent


def steppe(agent: Agent, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent.url, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "steppe", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_kv_round_trip_and_export_import(agent: Agent) -> None:
    assert steppe(agent, "kv", "put", "cli/a", "1").returncode == 0
    assert steppe(agent, "kv", "put", "cli/b", "-", stdin="two").returncode == 0
    assert steppe(agent, "kv", "get", "cli/b").stdout == "two\n"
    exported = steppe(agent, "kv", "export", "cli/").stdout
    assert steppe(agent, "kv", "delete", "-recurse", "cli/").returncode == 0
    missing = steppe(agent, "kv", "get", "cli/a")
    assert missing.returncode != 0 and "No key exists" in missing.stderr
    assert steppe(agent, "kv", "import", "-", stdin=exported).returncode == 0
    assert steppe(agent, "kv", "get", "-recurse", "cli/").stdout == "cli/a:1\ncli/b:two\n"
    bad = steppe(agent, "kv", "import", "-", stdin="not json")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_catalog_members_and_lock(agent: Agent) -> None:
    assert steppe(agent, "catalog", "datacenters").stdout == "dc1\n"
    assert "dev" in steppe(agent, "catalog", "nodes").stdout
    assert "alive" in steppe(agent, "members").stdout
    locked = steppe(agent, "lock", "cli/lock", "echo", "inside")
    assert locked.returncode == 0 and locked.stdout == "inside\n"
    unreachable = steppe(agent, "kv", "get", "x", "-http-addr", "127.0.0.1:1")
    assert unreachable.returncode != 0 and "cannot reach" in unreachable.stderr
