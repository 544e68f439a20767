"""Host ports for a new allocation: static ones as asked, dynamic ones drawn from the
node's ``[MinDynamicPort, MaxDynamicPort]`` avoiding every port already held there."""

from __future__ import annotations

import random

from steppe.structs import AllocatedPortMapping, NetworkResource, Port


def static_ports(networks: tuple[NetworkResource, ...]) -> list[int]:
    return [p.value for net in networks for p in net.reserved_ports if p.value > 0]


def dynamic_count(networks: tuple[NetworkResource, ...]) -> int:
    return sum(len(net.dynamic_ports) for net in networks)


def pick_dynamic(used: set[int], low: int, high: int, rng: random.Random) -> int | None:
    for _ in range(20):
        port = rng.randint(low, high)
        if port not in used:
            return port
    for port in range(low, high + 1):
        if port not in used:
            return port
    return None


def assign(
    networks: tuple[NetworkResource, ...],
    ip: str,
    used: set[int],
    low: int,
    high: int,
    rng: random.Random,
) -> tuple[tuple[NetworkResource, ...], list[AllocatedPortMapping]] | None:
    """The networks with every port's host value filled in; ``used`` gains them.
    None when the dynamic range is exhausted (callers checked static ports already)."""
    result: list[NetworkResource] = []
    mappings: list[AllocatedPortMapping] = []
    for net in networks:
        reserved = []
        for p in net.reserved_ports:
            used.add(p.value)
            reserved.append(p)
            mappings.append(AllocatedPortMapping(label=p.label, value=p.value, to=p.to, host_ip=ip))
        dynamic = []
        for p in net.dynamic_ports:
            value = pick_dynamic(used, low, high, rng)
            if value is None:
                return None
            used.add(value)
            to = p.to if p.to else 0
            dynamic.append(Port(label=p.label, value=value, to=to, host_network=p.host_network))
            mappings.append(AllocatedPortMapping(label=p.label, value=value, to=to, host_ip=ip))
        result.append(
            NetworkResource(
                mode=net.mode,
                device=net.device,
                ip=ip,
                mbits=net.mbits,
                reserved_ports=tuple(reserved),
                dynamic_ports=tuple(dynamic),
            )
        )
    return tuple(result), mappings
