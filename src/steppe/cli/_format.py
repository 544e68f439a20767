"""Terminal output in Nomad's style: ``key = value`` blocks and aligned columns."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click


def kv_block(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)} = {v}" for k, v in pairs)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def short(ident: str, full: bool = False) -> str:
    return ident if full else ident[:8]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=4, sort_keys=True))


def ago(ns: int, now: float | None = None) -> str:
    if not ns:
        return "-"
    delta = (now if now is not None else time.time()) - ns / 1e9
    if delta < 60:
        return f"{max(0, int(delta))}s ago"
    if delta < 3600:
        return f"{int(delta // 60)}m{int(delta % 60)}s ago"
    return f"{int(delta // 3600)}h{int(delta % 3600 // 60)}m ago"


def timestamp(ns: int) -> str:
    if not ns:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))
