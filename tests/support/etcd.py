"""Real etcd members for tests: 1 or 3 on free loopback ports in a temp dir, always
cleaned up by PID, even when the test fails.

Use the fixtures (import them into a conftest.py)::

    from tests.support.etcd import etcd_cluster3, etcd_single  # noqa: F401

or the context manager ``running_etcd(tmp_path, size)`` directly. Everything here is
synchronous so fixtures can have any scope, independent of the test's event loop.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.waiting import wait_until

from steppe.etcdmember import EtcdMember, find_leader


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdTestCluster:
    members: list[EtcdMember]
    base_dir: Path

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def member(self, name: str) -> EtcdMember:
        return next(m for m in self.members if m.name == name)

    def running(self) -> list[EtcdMember]:
        return [m for m in self.members if m.running]

    async def leader(self) -> EtcdMember | None:
        name = await find_leader({m.name: m.endpoint for m in self.running()})
        return self.member(name) if name else None

    def new_member(self, name: str, **kwargs: Any) -> EtcdMember:
        """A member object (not started) on fresh ports, tracked for cleanup."""
        member = make_member(self.base_dir, name, **kwargs)
        self.members.append(member)
        return member

    def stop_all(self) -> None:
        """SIGKILL: test data is thrown away, and a graceful stop of a whole cluster makes
        members wait for each other."""
        for member in self.members:
            member.kill()


def make_member(base_dir: Path, name: str, **kwargs: Any) -> EtcdMember:
    return EtcdMember(
        name,
        base_dir / name,
        client_url=f"http://127.0.0.1:{free_port()}",
        peer_url=f"http://127.0.0.1:{free_port()}",
        **kwargs,
    )


@contextmanager
def running_etcd(base_dir: Path, size: int = 1, **kwargs: Any) -> Iterator[EtcdTestCluster]:
    """Starts ``size`` members forming one new cluster; stops them all on exit."""
    members = [make_member(base_dir, f"m{i}", **kwargs) for i in range(size)]
    peers = {m.name: m.peer_url for m in members}
    for m in members:
        m.initial_cluster = dict(peers)
    cluster = EtcdTestCluster(members, base_dir)
    try:
        for m in members:
            m.spawn()
        for m in members:
            wait_until(m.is_healthy, timeout=30, what=f"etcd member {m.name} healthy")
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture(scope="session")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdTestCluster]:
    """One member shared by a whole test session: isolate tests by key prefix."""
    with running_etcd(tmp_path_factory.mktemp("etcd1"), 1) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster3(tmp_path: Path) -> Iterator[EtcdTestCluster]:
    """A fresh 3-member cluster per test, free to be killed and reshaped."""
    with running_etcd(tmp_path, 3) as cluster:
        yield cluster
