from __future__ import annotations

from steppe.dns import StaticCatalogView


def make_view() -> StaticCatalogView:
    """Three web instances (one tagged v2, one with its own address), a critical one, a DC2."""
    view = StaticCatalogView("dc1")
    for i in range(4):
        view.add_node(f"node{i}", f"10.0.0.{i + 1}")
    view.add_service("web", "node0", 8080, tags=("v1",))
    view.add_service("web", "node1", 8081, tags=("v2",))
    view.add_service("web", "node2", 8082, address="10.9.9.9", tags=("v1",))
    view.add_service("web", "node3", 8083, critical=True)
    view.add_node("far", "10.2.0.1", dc="dc2")
    view.add_service("web", "far", 9090, dc="dc2")
    view.add_node("six", "fd00::1")
    view.add_service("api", "six", 7000)
    return view
