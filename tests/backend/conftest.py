from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from tests.support.etcd import EtcdTestCluster, etcd_cluster3, etcd_single

from steppe.backend import Backend, EtcdBackend, MemoryBackend

__all__ = ["etcd_cluster3", "etcd_single"]

_counter = itertools.count()


@pytest.fixture(params=["memory", "etcd"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    b: Backend
    if request.param == "memory":
        b = MemoryBackend(lease_check_interval=0.05)
    else:
        cluster: EtcdTestCluster = request.getfixturevalue("etcd_single")
        b = EtcdBackend(cluster.endpoints)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """Tests share one etcd member; each gets its own key space."""
    return f"/t{next(_counter)}-{request.node.name}/"
