from __future__ import annotations

import pytest
from tests.dns.catalog import make_view

from steppe.dns import StaticCatalogView


@pytest.fixture
def view() -> StaticCatalogView:
    return make_view()
