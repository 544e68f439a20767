"""Cron expressions as Nomad's ``periodic { cron = ... }`` accepts them.

Five fields (minute hour day-of-month month day-of-week), or Nomad's longer forms: six
fields add a year, seven put seconds first (``sec min hour dom month dow year``). Each
field takes ``*``, ``?`` (day fields), numbers, names (``jan``, ``mon``), ranges, steps
and lists; ``@hourly``-style shortcuts too. When both day fields are restricted a day
matching either one fires, as in Vixie cron.

Times are computed on the wall clock of the spec's time zone, so ``0 9 * * *`` in
``Europe/Berlin`` stays at 09:00 across daylight-saving changes; a wall time that a
spring-forward skips does not fire that day.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_YEAR = 2099
SEARCH_YEARS = 9
"""How far ahead to look before deciding a spec never fires again (covers leap days)."""


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message names the bad field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day of month", 1, 31)
_MONTH = _Field("month", 1, 12, MONTHS, 1)
_WEEKDAY = _Field("day of week", 0, 7, WEEKDAYS, 0)
_YEAR = _Field("year", 1970, MAX_YEAR)


@dataclass(frozen=True)
class CronSpec:
    """A parsed expression: the allowed values of each field."""

    source: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    years: frozenset[int]
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: datetime) -> bool:
        weekday = (day.weekday() + 1) % 7
        in_days = day.day in self.days
        in_weekdays = weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays


@functools.lru_cache(maxsize=256)
def parse_cron(spec: str) -> CronSpec:
    """Parses ``spec``; raises :class:`CronError` saying which field is wrong and why."""
    text = " ".join(spec.split())
    if not text:
        raise CronError("the cron expression is empty")
    expanded = SHORTCUTS.get(text.lower(), text)
    if expanded.startswith("@"):
        raise CronError(f"unknown shortcut {text!r}; allowed: {', '.join(SHORTCUTS)}")
    parts = expanded.split(" ")
    if len(parts) == 5:
        parts = ["0", *parts, "*"]
    elif len(parts) == 6:
        parts = ["0", *parts]
    elif len(parts) != 7:
        raise CronError(
            f"{text!r} has {len(parts)} fields; expected 5 (minute hour day-of-month month "
            "day-of-week), 6 (plus year) or 7 (second first, year last)"
        )
    sec, minute, hour, day, month, weekday, year = parts
    weekdays = _parse_field(weekday, _WEEKDAY, question=True)
    return CronSpec(
        source=spec,
        seconds=_parse_field(sec, _SECOND),
        minutes=_parse_field(minute, _MINUTE),
        hours=_parse_field(hour, _HOUR),
        days=_parse_field(day, _DAY, question=True),
        months=_parse_field(month, _MONTH),
        weekdays=frozenset(d % 7 for d in weekdays),
        years=_parse_field(year, _YEAR),
        any_day=day in ("*", "?"),
        any_weekday=weekday in ("*", "?"),
    )


def _parse_field(text: str, field: _Field, question: bool = False) -> frozenset[int]:
    if text == "?" and question:
        text = "*"
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, field))
    return frozenset(values)


def _parse_item(item: str, field: _Field) -> range:
    where = f"{field.name} field {item!r}"
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(f"{where}: the step after '/' must be a whole number above 0")
        step = int(step_text)
        if step > field.high - field.low + 1:
            raise CronError(f"{where}: the step {step} is larger than the whole field")
    if base == "*":
        low, high = field.low, field.high
    else:
        first, dash, last = base.partition("-")
        low = _value(first, field, where)
        high = _value(last, field, where) if dash else (field.high if slash else low)
        if high < low:
            raise CronError(f"{where}: the range runs backwards ({low} > {high})")
    return range(low, high + 1, step)


def _value(text: str, field: _Field, where: str) -> int:
    lowered = text.lower()
    if lowered in field.names:
        return field.names.index(lowered) + field.name_base
    if not text.isdigit():
        allowed = f"{field.low}-{field.high}"
        if field.names:
            allowed += f" or a name like {field.names[0]!r}"
        raise CronError(f"{where}: {text!r} is not a number ({allowed})")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{where}: {value} is outside {field.low}-{field.high}")
    return value


def zone(name: str | None) -> tzinfo:
    """The time zone called ``name`` (empty: UTC); raises :class:`CronError` if unknown."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}") from exc


def next_launch(
    spec: str | CronSpec, after: datetime, time_zone: str | tzinfo | None = None
) -> datetime | None:
    """The first time strictly after ``after`` that ``spec`` fires, in ``time_zone``
    (default UTC); None if it never fires again. ``after`` must carry a time zone."""
    if after.tzinfo is None:
        raise ValueError("next_launch needs an aware datetime")
    parsed = parse_cron(spec) if isinstance(spec, str) else spec
    tz = zone(time_zone) if time_zone is None or isinstance(time_zone, str) else time_zone
    wall = after.astimezone(tz).replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
    while True:
        found = _next_wall(parsed, wall)
        if found is None:
            return None
        for fold in (0, 1):
            aware = found.replace(tzinfo=tz, fold=fold)
            if _exists(aware) and aware > after:
                return aware
        wall = found + timedelta(seconds=1)


def next_launch_any(
    specs: tuple[str, ...] | list[str], after: datetime, time_zone: str | tzinfo | None = None
) -> datetime | None:
    """The earliest next launch among several specs (Nomad's ``crons = [...]``)."""
    times = [t for s in specs if (t := next_launch(s, after, time_zone)) is not None]
    return min(times, default=None)


def _exists(aware: datetime) -> bool:
    """False for wall times a daylight-saving jump skips."""
    back = aware.astimezone(UTC).astimezone(aware.tzinfo)
    return back.replace(tzinfo=None) == aware.replace(tzinfo=None)


def _next_wall(spec: CronSpec, t: datetime) -> datetime | None:
    """The first naive wall time at or after ``t`` matching every field."""
    limit = t.year + SEARCH_YEARS
    while t.year <= min(limit, MAX_YEAR):
        if t.year not in spec.years:
            t = datetime(t.year + 1, 1, 1)
        elif t.month not in spec.months:
            t = datetime(t.year + 1, 1, 1) if t.month == 12 else datetime(t.year, t.month + 1, 1)
        elif not spec.day_matches(t):
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
        elif t.hour not in spec.hours:
            t = t.replace(minute=0, second=0) + timedelta(hours=1)
        elif t.minute not in spec.minutes:
            t = t.replace(second=0) + timedelta(minutes=1)
        elif t.second not in spec.seconds:
            t += timedelta(seconds=1)
        else:
            return t
    return None
