"""The narrow read interface DNS needs from the catalog, and an in-memory version of it.

DNS only ever asks three questions (which healthy instances of a service, where is a node,
did anything change) so the catalog can answer them from its own snapshots without the DNS
server knowing how the catalog is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ServiceInstance:
    """One registered instance of a service, as DNS needs it.

    ``address`` is already resolved: the service's own address, or the node's address when
    the service registered none.
    """

    node: str
    node_address: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    dc: str = ""


@dataclass(frozen=True)
class NodeRecord:
    name: str
    address: str
    dc: str


@runtime_checkable
class CatalogView(Protocol):
    """What the DNS server reads. Names, tags and datacenters arrive lowercased.

    ``index()`` must change whenever any answer could change: DNS caches whole encoded
    replies keyed on it and never looks at the catalog again until it moves. It is called
    for every packet, so it has to be a cheap read (a counter, a snapshot's revision).
    """

    @property
    def datacenter(self) -> str: ...

    def index(self) -> int: ...

    def service_instances(
        self, name: str, tag: str | None, dc: str
    ) -> list[ServiceInstance] | None:
        """Instances with no critical check (any tag if ``tag`` is None); None = unknown DC."""
        ...

    def node(self, name: str, dc: str) -> NodeRecord | None: ...


@dataclass
class _Registration:
    service: str
    node: str
    address: str
    port: int
    tags: tuple[str, ...]
    critical: bool


@dataclass
class _Datacenter:
    nodes: dict[str, str] = field(default_factory=dict)
    registrations: list[_Registration] = field(default_factory=list)


class StaticCatalogView:
    """A mutable in-memory catalog for tests and benchmarks; every change bumps the index.

    Lookups are case-insensitive, as in Consul.
    """

    def __init__(self, datacenter: str = "dc1") -> None:
        self._datacenter = datacenter.lower()
        self._dcs: dict[str, _Datacenter] = {self._datacenter: _Datacenter()}
        self._index = 1

    @property
    def datacenter(self) -> str:
        return self._datacenter

    def index(self) -> int:
        return self._index

    def add_datacenter(self, dc: str) -> None:
        self._dcs.setdefault(dc.lower(), _Datacenter())
        self._index += 1

    def add_node(self, name: str, address: str, dc: str | None = None) -> None:
        self._dc(dc).nodes[name.lower()] = address
        self._index += 1

    def add_service(
        self,
        name: str,
        node: str,
        port: int,
        *,
        address: str = "",
        tags: tuple[str, ...] = (),
        dc: str | None = None,
        critical: bool = False,
    ) -> None:
        """Registers an instance on an existing node (add the node first)."""
        datacenter = self._dc(dc)
        if node.lower() not in datacenter.nodes:
            raise KeyError(f"node {node!r} is not in datacenter {dc or self._datacenter!r}")
        reg = _Registration(name.lower(), node.lower(), address, port, tuple(tags), critical)
        datacenter.registrations.append(reg)
        self._index += 1

    def remove_service(self, name: str, node: str | None = None, dc: str | None = None) -> None:
        """Removes every instance of ``name`` (on ``node`` only, when given)."""
        datacenter = self._dc(dc)
        datacenter.registrations = [
            r
            for r in datacenter.registrations
            if not (r.service == name.lower() and (node is None or r.node == node.lower()))
        ]
        self._index += 1

    def set_critical(self, name: str, node: str, critical: bool, dc: str | None = None) -> None:
        for reg in self._dc(dc).registrations:
            if reg.service == name.lower() and reg.node == node.lower():
                reg.critical = critical
        self._index += 1

    def service_instances(
        self, name: str, tag: str | None, dc: str
    ) -> list[ServiceInstance] | None:
        datacenter = self._dcs.get(dc.lower())
        if datacenter is None:
            return None
        found = []
        for reg in datacenter.registrations:
            if reg.service != name.lower() or reg.critical:
                continue
            if tag is not None and tag.lower() not in (t.lower() for t in reg.tags):
                continue
            node_address = datacenter.nodes[reg.node]
            found.append(
                ServiceInstance(
                    node=reg.node,
                    node_address=node_address,
                    address=reg.address or node_address,
                    port=reg.port,
                    tags=reg.tags,
                    dc=dc.lower(),
                )
            )
        return found

    def node(self, name: str, dc: str) -> NodeRecord | None:
        datacenter = self._dcs.get(dc.lower())
        if datacenter is None or name.lower() not in datacenter.nodes:
            return None
        return NodeRecord(name.lower(), datacenter.nodes[name.lower()], dc.lower())

    def _dc(self, dc: str | None) -> _Datacenter:
        return self._dcs.setdefault((dc or self._datacenter).lower(), _Datacenter())
