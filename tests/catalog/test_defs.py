"""Parsing of agent definitions: both spellings, and errors that name the field."""

from __future__ import annotations

import pytest

from steppe.catalog import SessionLimits, parse_check, parse_duration, parse_service, parse_session
from steppe.errors import ValidationError


def test_service_with_snake_and_pascal_keys() -> None:
    s = parse_service(
        {
            "name": "web",
            "Port": 80,
            "tags": ["a"],
            "checks": [
                {"http": "http://x/health", "interval": "10s", "timeout": "2s"},
                {"TCP": "x:80", "Interval": "1m30s", "deregister_critical_service_after": "1m"},
            ],
        }
    )
    assert s.service_id == "web" and s.tags == ("a",)
    assert [c.check_id for c in s.checks] == ["service:web:1", "service:web:2"]
    assert s.checks[1].interval == 90 * 10**9
    assert s.checks[1].deregister_critical_after == 60 * 10**9


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"Name": "c", "TCP": "x:1"}, "Interval"),
        ({"Name": "c", "TTL": "-1s"}, "TTL"),
        ({"Name": "c", "TTL": "1s", "TCP": "x:1", "Interval": "1s"}, "exactly one"),
        ({"Name": "c", "HTTP": "http://x", "Interval": "soon"}, "Interval"),
        ({"Name": "c", "TTL": "1s", "Status": "great"}, "Status"),
    ],
)
def test_check_errors_name_the_field(body: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError, match=where):
        parse_check(body)


def test_session_parsing() -> None:
    limits = SessionLimits(min_ttl=10)
    s = parse_session({"TTL": "15s", "LockDelay": 5, "Behavior": "delete"}, "n1", limits)
    assert (s.node, s.ttl, s.lock_delay, s.behavior) == ("n1", "15s", 5 * 10**9, "delete")
    with pytest.raises(ValidationError, match="TTL"):
        parse_session({"TTL": "5s"}, "n1", limits)
    assert parse_duration("1h1m", "x") == 3660 * 10**9
