"""The catalog as the DNS server reads it (:class:`steppe.dns.CatalogView`).

Lookups are case-insensitive, so names are matched lowercased; the index is the store's
revision of the catalog tables, which is what DNS keys its cached answers on.
"""

from __future__ import annotations

from steppe.catalog import _reads as reads
from steppe.catalog._server import CatalogServer
from steppe.catalog._tables import CATALOG_READ, NODES, SERVICES
from steppe.dns import NodeRecord, ServiceInstance
from steppe.structs import CatalogNode, ServiceRow, has_critical


class CatalogDNSView:
    def __init__(self, catalog: CatalogServer) -> None:
        self._catalog = catalog
        self._index = catalog.store.index_tracker(*CATALOG_READ)

    @property
    def datacenter(self) -> str:
        return self._catalog.datacenter.lower()

    def index(self) -> int:
        return self._index.index

    def service_instances(
        self, name: str, tag: str | None, dc: str
    ) -> list[ServiceInstance] | None:
        if dc.lower() != self.datacenter:
            return None
        snap = self._catalog.store.snapshot()
        rows: list[ServiceRow] = [
            r for r in snap.rows(SERVICES.name) if r.service.service.lower() == name.lower()
        ]
        out = []
        for row in rows:
            s = row.service
            if tag is not None and tag.lower() not in (t.lower() for t in s.tags):
                continue
            if has_critical(reads.instance_checks(snap, row)):
                continue
            node: CatalogNode | None = snap.get(NODES.name, row.node)
            node_address = node.address if node else ""
            out.append(
                ServiceInstance(
                    node=row.node,
                    node_address=node_address,
                    address=s.address or node_address,
                    port=s.port,
                    tags=s.tags,
                    dc=self.datacenter,
                )
            )
        return out

    def node(self, name: str, dc: str) -> NodeRecord | None:
        if dc.lower() != self.datacenter:
            return None
        for node in self._catalog.store.snapshot().rows(NODES.name):
            if node.node.lower() == name.lower():
                return NodeRecord(node.node.lower(), node.address, self.datacenter)
        return None
