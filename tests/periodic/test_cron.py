"""The cron parser against fixed instants: no clock involved."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from steppe.cron import CronError, next_launch, next_launch_any, parse_cron


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("*/5 * * * *", utc(2024, 3, 1, 10, 2, 30), utc(2024, 3, 1, 10, 5)),
        ("*/5 * * * *", utc(2024, 3, 1, 10, 5), utc(2024, 3, 1, 10, 10)),
        ("0 * * * *", utc(2024, 3, 1, 23, 0), utc(2024, 3, 2, 0, 0)),
        ("30 9 * * mon-fri", utc(2024, 3, 1, 10, 0), utc(2024, 3, 4, 9, 30)),  # Fri -> Mon
        ("0 0 1 jan *", utc(2024, 6, 1), utc(2025, 1, 1)),
        ("0 0 29 feb *", utc(2024, 3, 1), utc(2028, 2, 29)),
        ("0 12 1,15 * *", utc(2024, 1, 2), utc(2024, 1, 15, 12)),
        ("10-20/5 3 * * *", utc(2024, 1, 1, 3, 11), utc(2024, 1, 1, 3, 15)),
        ("0 0 * * 7", utc(2024, 3, 1), utc(2024, 3, 3)),  # 7 is Sunday too
        ("0 0 13 * fri", utc(2024, 3, 1, 1), utc(2024, 3, 8)),  # either day field matches
        ("0 0 ? * sun", utc(2024, 3, 1), utc(2024, 3, 3)),
        ("@hourly", utc(2024, 3, 1, 10, 59, 59), utc(2024, 3, 1, 11)),
        ("@daily", utc(2024, 12, 31, 0, 0, 1), utc(2025, 1, 1)),
        ("@weekly", utc(2024, 3, 1), utc(2024, 3, 3)),
        ("@monthly", utc(2024, 1, 31), utc(2024, 2, 1)),
        ("@yearly", utc(2024, 1, 1), utc(2025, 1, 1)),
        ("*/2 * * * * * *", utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 2)),
        ("0 0 1 1 * 2030", utc(2024, 1, 1), utc(2030, 1, 1)),
    ],
)
def test_next_launch(spec: str, after: datetime, expected: datetime) -> None:
    assert next_launch(spec, after) == expected


def test_time_zone_keeps_the_wall_clock_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    before = next_launch("0 9 * * *", utc(2024, 3, 30, 12), "Europe/Berlin")
    after = next_launch("0 9 * * *", utc(2024, 3, 31, 12), "Europe/Berlin")
    assert before == datetime(2024, 3, 31, 9, tzinfo=berlin)
    assert before is not None and before.astimezone(UTC) == utc(2024, 3, 31, 7)
    assert after is not None and after.astimezone(UTC) == utc(2024, 4, 1, 7)


def test_a_skipped_wall_time_does_not_fire_that_day() -> None:
    launch = next_launch("30 2 * * *", utc(2024, 3, 30, 12), "Europe/Berlin")
    assert launch is not None and launch.astimezone(UTC) == utc(2024, 4, 1, 0, 30)


def test_a_repeated_wall_time_fires_once() -> None:
    # 02:30 happens twice on 2024-10-27 in Berlin: 00:30 and 01:30 UTC
    first = next_launch("30 2 * * *", utc(2024, 10, 27, 0), "Europe/Berlin")
    second = next_launch("30 2 * * *", utc(2024, 10, 27, 0, 30), "Europe/Berlin")
    assert first is not None and first.astimezone(UTC) == utc(2024, 10, 27, 0, 30)
    assert second is not None and second.astimezone(UTC) == utc(2024, 10, 28, 1, 30)


def test_a_spec_that_never_fires_again_gives_none() -> None:
    assert next_launch("0 0 1 1 * 2020", utc(2024, 1, 1)) is None
    assert next_launch("0 0 31 2 *", utc(2024, 1, 1)) is None


def test_several_specs_take_the_earliest() -> None:
    after = utc(2024, 3, 1, 10, 0)
    assert next_launch_any(["0 12 * * *", "15 10 * * *"], after) == utc(2024, 3, 1, 10, 15)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_launch("* * * * *", datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("* * * *", "has 4 fields"),
        ("61 * * * *", "minute field '61': 61 is outside 0-59"),
        ("* 24 * * *", "hour field '24'"),
        ("* * 0 * *", "day of month field '0'"),
        ("* * * foo *", "month field 'foo': 'foo' is not a number"),
        ("* * * * 8", "day of week field '8'"),
        ("*/0 * * * *", "step after '/'"),
        ("5-1 * * * *", "runs backwards"),
        ("@sometimes", "unknown shortcut"),
    ],
)
def test_bad_specs_name_the_field(spec: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(spec)


def test_unknown_time_zone() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'"):
        next_launch("* * * * *", utc(2024, 1, 1), "Mars/Olympus")
