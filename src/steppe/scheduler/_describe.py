"""Placement failures in words, for ``job status`` and ``job plan``."""

from __future__ import annotations

from steppe.structs import AllocMetric


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


def describe_failures(metric: AllocMetric) -> list[str]:
    """E.g. ``["2 nodes filtered by constraint ${attr.kernel.name} = windows",
    "1 node exhausted memory"]``; most frequent reasons first within each kind."""
    lines: list[str] = []
    if metric.nodes_evaluated == 0 and not metric.nodes_available:
        lines.append("no nodes were eligible for evaluation")
    for dc, n in sorted(metric.nodes_available.items()):
        if n == 0:
            lines.append(f"no nodes available in datacenter {dc}")
    for klass, n in sorted(metric.class_filtered.items(), key=lambda kv: -kv[1]):
        lines.append(f"{_nodes(n)} of class {klass} filtered")
    for reason, n in sorted(metric.constraint_filtered.items(), key=lambda kv: -kv[1]):
        if reason == "missing drivers":
            lines.append(f"{_nodes(n)} filtered for missing drivers")
        else:
            lines.append(f"{_nodes(n)} filtered by constraint {reason}")
    for dim, n in sorted(metric.dimension_exhausted.items(), key=lambda kv: -kv[1]):
        lines.append(f"{_nodes(n)} exhausted {dim}")
    for klass, n in sorted(metric.class_exhausted.items(), key=lambda kv: -kv[1]):
        lines.append(f"{_nodes(n)} of class {klass} exhausted")
    if metric.coalesced_failures:
        more = metric.coalesced_failures
        lines.append(f"{more} more allocation{'s' if more != 1 else ''} could not be placed")
    return lines
