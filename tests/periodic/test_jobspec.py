"""``periodic``, ``parameterized`` and ``dispatch_payload`` in job files and JSON."""

from __future__ import annotations

import pytest

from steppe.errors import ValidationError
from steppe.jobspec import parse_job, parse_job_json
from steppe.structs import ParameterizedJobConfig, PeriodicConfig, to_json

JOB = """
job "report" {
  type = "batch"
%s
  group "g" {
    task "t" {
      driver = "raw_exec"
      config { command = "/bin/true" }
%s
    }
  }
}
"""


def job_text(job_body: str, task_body: str = "") -> str:
    return JOB % (job_body, task_body)


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_job(text, "report.hcl")
    return [str(p) for p in info.value.problems]


def test_periodic_block_reads_with_nomads_defaults() -> None:
    job = parse_job(job_text('  periodic {\n    cron = "*/5 * * * *"\n  }'))
    assert job.periodic == PeriodicConfig(spec="*/5 * * * *")
    assert job.periodic.enabled and job.periodic.time_zone == "UTC"
    assert job.is_periodic_active() and job.is_parent()


def test_periodic_block_with_every_key() -> None:
    body = """  periodic {
    crons            = ["0 1 * * *", "@hourly"]
    prohibit_overlap = true
    time_zone        = "Europe/Berlin"
    enabled          = false
  }"""
    job = parse_job(job_text(body))
    assert job.periodic == PeriodicConfig(
        enabled=False,
        specs=("0 1 * * *", "@hourly"),
        prohibit_overlap=True,
        time_zone="Europe/Berlin",
    )
    assert not job.is_periodic_active() and job.is_parent()


def test_parameterized_and_dispatch_payload() -> None:
    body = """  parameterized {
    payload       = "required"
    meta_required = ["customer"]
    meta_optional = ["note"]
  }"""
    job = parse_job(job_text(body, '      dispatch_payload { file = "input.txt" }'))
    assert job.parameterized_job == ParameterizedJobConfig(
        payload="required", meta_required=("customer",), meta_optional=("note",)
    )
    task = job.task_groups[0].tasks[0]
    assert task.dispatch_payload is not None and task.dispatch_payload.file == "input.txt"
    assert job.is_parameterized() and not job.is_periodic_active()


def test_json_shape_is_nomads() -> None:
    job = parse_job(job_text('  periodic {\n    cron = "@daily"\n  }'))
    text = to_json(job).decode()
    assert '"Periodic":{"Enabled":true,"Spec":"@daily"' in text
    assert '"ParentID":""' in text and '"Dispatched":false' in text
    assert parse_job_json(text) == job


def test_json_job_gets_canonical_time_zone() -> None:
    job = parse_job(job_text('  periodic {\n    cron = "@daily"\n  }'))
    raw = to_json(job).replace(b'"TimeZone":"UTC"', b'"TimeZone":""')
    parsed = parse_job_json(raw)
    assert parsed.periodic is not None and parsed.periodic.time_zone == "UTC"


def test_bad_periodic_block_reports_everything_with_lines() -> None:
    body = """  periodic {
    cron      = "*/5 * * *"
    time_zone = "Nowhere/Land"
    overlap   = true
  }"""
    found = problems(job_text(body).replace('"batch"', '"service"'))
    assert found == [
        'report.hcl:3: job "report" > type: periodic jobs must be of type batch or sysbatch,'
        " not 'service'",
        "report.hcl:5: job \"report\" > periodic > cron: invalid cron expression '*/5 * * *':"
        " '*/5 * * *' has 4 fields; expected 5 (minute hour day-of-month month day-of-week),"
        " 6 (plus year) or 7 (second first, year last)",
        'report.hcl:6: job "report" > periodic > time_zone: unknown time zone'
        " 'Nowhere/Land' (use an IANA name like Europe/Berlin)",
        "report.hcl:7: job \"report\" > periodic: unknown key 'overlap' in periodic;"
        " did you mean 'prohibit_overlap'?",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('  periodic {\n    cron = "61 * * * *"\n  }', "minute field '61': 61 is outside 0-59"),
        ('  periodic {\n    crons = ["@hourly", "* * *"]\n  }', "'* * *' has 3 fields"),
        ("  periodic {\n    prohibit_overlap = true\n  }", 'needs cron = "..."'),
        (
            '  periodic {\n    cron = "@daily"\n    crons = ["@hourly"]\n  }',
            "either cron or crons",
        ),
        ('  parameterized {\n    payload = "maybe"\n  }', "unknown payload 'maybe'"),
        (
            '  parameterized {\n    meta_required = ["a"]\n    meta_optional = ["a"]\n  }',
            "both required and optional: ['a']",
        ),
        ("  parameterized {\n    payload_kind = 1\n  }", "unknown key 'payload_kind'"),
    ],
)
def test_bad_stanzas(body: str, expected: str) -> None:
    found = problems(job_text(body))
    assert any(expected in p for p in found), found


def test_dispatch_payload_must_stay_in_local() -> None:
    found = problems(
        job_text(
            "  parameterized {}",
            '      dispatch_payload { file = "../../etc/passwd" }',
        )
    )
    assert found == [
        'report.hcl:9: job "report" > group "g" > task "t" > dispatch_payload > file: '
        "file '../../etc/passwd' must stay inside the task's local/ directory"
    ]


def test_parameterized_service_job_is_refused() -> None:
    found = problems(job_text("  parameterized {}").replace('"batch"', '"service"'))
    assert found == [
        'report.hcl:3: job "report" > type: parameterized jobs must be of type batch or '
        "sysbatch, not 'service'"
    ]
