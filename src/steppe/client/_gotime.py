"""Go's spellings of time, because Nomad's users read them in task events and Consul's
agent API parses them: ``30m0s``, ``1h0m0s``, ``1.5s``, RFC 3339 timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from steppe.structs import NS

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
