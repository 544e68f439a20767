"""Fixtures shared by the whole suite: one private Docker engine per test session."""

from __future__ import annotations

import pytest
from tests.support.dockerd import session_fixture

private_dockerd = pytest.fixture(scope="session", name="private_dockerd")(session_fixture)
