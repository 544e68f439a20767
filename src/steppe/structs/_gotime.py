"""Go's spellings of time, because Nomad's and Consul's users write and read them:
durations in job files, configs and APIs ("25s", "1h30m", "100ms"), durations shown in
task events ("30m0s"), and RFC 3339 timestamps. The one place that parses and prints them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from steppe.structs._naming import NS

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Nanoseconds in ``text``; ValueError says what a duration looks like."""
    body = text.strip()
    sign = 1
    if body[:1] in "+-" and body:
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(
            f'{text!r} is not a duration; use a number and a unit like "30s", '
            '"5m", "1h30m" or "100ms"'
        )
    return sign * round(total)


_SMALL_UNITS = ((1_000_000, "ms"), (1_000, "µs"), (1, "ns"))


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(rest).rjust(digits, '0').rstrip('0')}"


def go_duration(ns: int) -> str:
    """What Go's ``time.Duration.String`` prints for ``ns`` nanoseconds."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < NS:
        for unit, suffix in _SMALL_UNITS:
            if ns >= unit:
                return f"{sign}{_fraction(ns, unit)}{suffix}"
    hours, ns = divmod(ns, 3600 * NS)
    minutes, ns = divmod(ns, 60 * NS)
    text = f"{_fraction(ns, NS)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def rfc3339(ts: float) -> str:
    """A Unix time as Go marshals ``time.Time`` in JSON (UTC, nanosecond precision)."""
    moment = datetime.fromtimestamp(ts, UTC)
    frac = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def unix_ns(ts: float) -> int:
    return int(ts * NS)
