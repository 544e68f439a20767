"""Bad etcd settings are refused up front, naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from steppe.backend import EtcdBackend
from steppe.errors import ValidationError
from steppe.etcdmember import EtcdMember, MemberInfo, initial_cluster


def test_backend_rejects_bad_endpoints() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        EtcdBackend([])
    with pytest.raises(ValidationError, match="'nohost'"):
        EtcdBackend(["127.0.0.1:2379", "nohost"])


def test_member_rejects_bad_settings(tmp_path: Path) -> None:
    urls = {"client_url": "http://127.0.0.1:1", "peer_url": "http://127.0.0.1:2"}
    with pytest.raises(ValidationError, match="client URL"):
        EtcdMember("a", tmp_path, client_url="127.0.0.1:1", peer_url="http://127.0.0.1:2")
    with pytest.raises(ValidationError, match="name"):
        EtcdMember("a,b", tmp_path, **urls)
    with pytest.raises(ValidationError, match="election timeout"):
        EtcdMember("a", tmp_path, heartbeat_ms=100, election_ms=200, **urls)


def test_member_command_carries_cluster_and_tuning(tmp_path: Path) -> None:
    m = EtcdMember(
        "s1",
        tmp_path,
        client_url="http://127.0.0.1:1",
        peer_url="http://127.0.0.1:2",
        initial_cluster={"s0": "http://127.0.0.1:3", "s1": "http://127.0.0.1:2"},
        cluster_state="existing",
    )
    cmd = m.command()
    assert "--initial-cluster=s0=http://127.0.0.1:3,s1=http://127.0.0.1:2" in cmd
    assert "--initial-cluster-state=existing" in cmd
    assert "--auto-compaction-mode=revision" in cmd
    assert f"--data-dir={tmp_path / 'etcd'}" in cmd
    assert m.endpoint == "127.0.0.1:1"


def test_initial_cluster_for_a_joining_member() -> None:
    members = [
        MemberInfo(1, "s0", ("http://a:1",), ("http://a:2",)),
        MemberInfo(2, "", ("http://c:1",), ()),
    ]
    assert initial_cluster(members, "s2", "http://c:1") == {
        "s0": "http://a:1",
        "s2": "http://c:1",
    }
