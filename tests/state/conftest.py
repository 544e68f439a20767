"""A state store over the in-memory backend; ``backend`` for tests that start a second
store on the same data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from steppe.backend import MemoryBackend
from steppe.state import SCHEDULER_TABLES, StateStore


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend(lease_check_interval=None)


@pytest.fixture
async def store(backend: MemoryBackend) -> AsyncIterator[StateStore]:
    s = StateStore(backend, SCHEDULER_TABLES)
    await s.start()
    yield s
    await s.stop()
