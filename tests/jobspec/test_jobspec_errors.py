"""Broken job files: every problem is reported, each with its place and what is allowed."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from steppe.errors import Problem, ValidationError
from steppe.jobspec import parse_job, parse_job_file, parse_job_json, validate_job
from steppe.structs import Job, Task, TaskGroup


def _problems(text: str) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        parse_job(text, "web.hcl")
    return info.value.problems


def _job(task: str = 'driver = "exec"', group: str = "", job: str = "") -> str:
    return (
        f'job "web" {{\n{job}\n  group "g" {{\n{group}\n    task "t" {{\n{task}\n    }}\n  }}\n}}\n'
    )


TG = 'job "web" > group "g"'
TT = 'job "web" > group "g" > task "t"'

CASES = [
    pytest.param(
        _job(group="count = -1"),
        f"web.hcl:4: {TG} > count",
        "count must be 0 or more, got -1",
        id="negative-count",
    ),
    pytest.param(
        _job(task='driver = "dokcer"'),
        f"web.hcl:6: {TT} > driver",
        "unknown driver 'dokcer'; did you mean 'docker'? (allowed: docker, exec, raw_exec)",
        id="unknown-driver",
    ),
    pytest.param(
        _job(task='user = "x"'),
        f"web.hcl:5: {TT} > driver",
        "the task needs a driver; allowed: docker, exec, raw_exec",
        id="no-driver",
    ),
    pytest.param(
        'job "web" {\n  group "g" {\n    count = 2\n  }\n}\n',
        f"web.hcl:2: {TG}",
        'a group needs at least one task "NAME" { driver = ... }',
        id="group-without-task",
    ),
    pytest.param(
        'job "web" {\n  type = "batch"\n}\n',
        'web.hcl:1: job "web"',
        'a job needs at least one group "NAME" { task "NAME" { ... } }',
        id="job-without-group",
    ),
    pytest.param(
        _job(task='driver = "exec"\n resources {\n memory = "lots"\n }'),
        f"web.hcl:8: {TT} > resources > memory",
        'expected a whole number, got the string "lots"',
        id="memory-wrong-type",
    ),
    pytest.param(
        _job(task='driver = "exec"\n resources {\n memroy = 64\n }'),
        f"web.hcl:8: {TT} > resources",
        "unknown key 'memroy' in resources; did you mean 'memory'?",
        id="unknown-key-suggestion",
    ),
    pytest.param(
        'job "web" {\n  group "g" {\n    task "t" { driver = "exec" }\n'
        '    task "t" { driver = "exec" }\n  }\n}\n',
        f"web.hcl:4: {TT}",
        "task name 't' is used 2 times; names must be unique",
        id="duplicate-task",
    ),
    pytest.param(
        'job "web" {\n  group "g" {\n    task "t" { driver = "exec" }\n  }\n'
        '  group "g" {\n    task "u" { driver = "exec" }\n  }\n}\n',
        f"web.hcl:5: {TG}",
        "group name 'g' is used 2 times; names must be unique",
        id="duplicate-group",
    ),
    pytest.param(
        _job(
            task='driver = "exec"\n service {\n name = "web"\n port = "htp"\n }',
            group='network {\n port "http" {}\n }',
        ),
        f'web.hcl:11: {TT} > service "web" > port',
        "port label 'htp' is not declared by any network; did you mean 'http'?",
        id="undeclared-port-label",
    ),
    pytest.param(
        _job(task='driver = "exec"\n service {\n name = "web"\n check {\n type = "tcp"\n }\n }'),
        f'web.hcl:9: {TT} > service "web" > check[0] > interval',
        "a tcp check needs an interval above 0",
        id="check-without-interval",
    ),
    pytest.param(
        _job(
            task='driver = "exec"\n service {\n name = "web"\n check {\n type = "http"\n'
            ' path = "/"\n interval = "5s"\n timeout = "0s"\n }\n }'
        ),
        f'web.hcl:13: {TT} > service "web" > check[0] > timeout',
        "a http check needs a timeout above 0",
        id="check-zero-timeout",
    ),
    pytest.param(
        _job(task='driver = "exec"\n service {\n name = "web"\n check {\n type = "ping"\n }\n }'),
        f'web.hcl:10: {TT} > service "web" > check[0] > type',
        "unknown check type 'ping'; allowed: grpc, http, script, tcp",
        id="unknown-check-type",
    ),
    pytest.param(
        _job(task='driver = "exec"\n kill_timeout = "5 minutes"'),
        f"web.hcl:7: {TT} > kill_timeout",
        '\'5 minutes\' is not a duration; use a number and a unit like "30s", "5m", '
        '"1h30m" or "100ms"',
        id="bad-duration",
    ),
    pytest.param(
        _job(job='  type = "servce"'),
        'web.hcl:2: job "web" > type',
        "unknown job type 'servce'; allowed: batch, service, sysbatch, system",
        id="bad-job-type",
    ),
    pytest.param(
        _job(job="  priority = 0"),
        'web.hcl:2: job "web" > priority',
        "priority must be between 1 and 100, got 0",
        id="priority-range",
    ),
    pytest.param(
        _job(job='  constraint {\n attribute = "${attr.x}"\n operator = "likes"\n value = "1"\n }'),
        'web.hcl:4: job "web" > constraint[0] > operator',
        "unknown constraint operator 'likes'; allowed: !=, <, <=, =, ==, >, >=, distinct_hosts,"
        " distinct_property, is, is_not_set, is_set, not, regexp, semver, set_contains,"
        " set_contains_all, set_contains_any, version",
        id="constraint-operator",
    ),
    pytest.param(
        _job(job='  constraint {\n attribute = "${attr.x}"\n regexp = "[a-"\n }'),
        'web.hcl:4: job "web" > constraint[0] > value',
        "regular expression '[a-' does not compile: unterminated character set at position 0",
        id="regexp-does-not-compile",
    ),
    pytest.param(
        _job(job="  datacenters = []"),
        'web.hcl:2: job "web" > datacenters',
        "datacenters must name at least one datacenter",
        id="empty-datacenters",
    ),
    pytest.param(
        _job(job="  update = 3"),
        'web.hcl:2: job "web" > update',
        "'update' must be a block, got the number 3",
        id="update-not-a-block",
    ),
    pytest.param(
        _job(group='restart {\n mode = "sometimes"\n }'),
        f"web.hcl:5: {TG} > restart > mode",
        "unknown restart mode 'sometimes'; allowed: delay, fail",
        id="restart-mode",
    ),
    pytest.param(
        'job "web" {\n  group "g" {\n    count = \n  }\n}\n',
        "web.hcl:3:13",
        "unexpected '}'; expected a value",
        id="syntax-missing-value",
    ),
    pytest.param(
        'job "web" {\n  group "g" {\n    count = 1\n  }\n',
        "web.hcl:5:1",
        "unexpected end of file; expected '}'",
        id="syntax-unclosed-block",
    ),
    pytest.param(
        'job "web" {\n  count = 1\n  count = 2\n}\n',
        "web.hcl:3",
        "'count' is set twice in the same block",
        id="duplicate-attribute",
    ),
    pytest.param(
        'jobb "web" {\n}\n',
        "web.hcl:1",
        "unknown key 'jobb' in top level; did you mean 'job'?",
        id="unknown-top-level",
    ),
    pytest.param(
        'job {\n  group "g" {}\n}\n',
        "web.hcl:1: job[0]",
        "a 'job' block needs exactly one label, its name (found 0)",
        id="job-without-name",
    ),
]


@pytest.mark.parametrize(("text", "location", "message"), CASES)
def test_broken_file(text: str, location: str, message: str) -> None:
    problems = _problems(text)
    assert Problem(location, message) in problems, "\n".join(map(str, problems))


def test_all_problems_reported_at_once() -> None:
    text = """job "web" {
  type = "servce"
  group "g" {
    count = -1
    task "t" {
      driver = "dokcer"
      resources {
        memory = "lots"
      }
      service {
        name = "web"
        port = "http"
      }
    }
    task "t" {
      driver = "exec"
    }
  }
}
"""
    problems = _problems(text)
    assert [p.location for p in problems] == [
        'web.hcl:2: job "web" > type',
        f"web.hcl:4: {TG} > count",
        f"web.hcl:6: {TT} > driver",
        f"web.hcl:8: {TT} > resources > memory",
        f'web.hcl:12: {TT} > service "web" > port',
        f"web.hcl:15: {TT}",
    ]
    with pytest.raises(ValidationError) as info:
        parse_job(text, "web.hcl")
    assert "did you mean 'docker'" in str(info.value)


def test_bad_duration_is_reported_once() -> None:
    text = _job(
        task='driver = "exec"\n service {\n name = "w"\n check {\n type = "tcp"\n'
        ' interval = "10x"\n timeout = "1s"\n }\n }'
    )
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].location.endswith("check[0] > interval")


def test_json_job_problems_name_the_field() -> None:
    body = {"Job": {"ID": "api", "TaskGroups": [{"Name": "g", "Count": "x"}]}}
    with pytest.raises(ValidationError) as info:
        parse_job_json(msgspec.json.encode(body))
    (problem,) = info.value.problems
    assert "TaskGroups[0].Count" in problem.message

    body = {"Job": {"ID": "api", "TaskGroups": [{"Name": "g", "Count": -2, "Tasks": []}]}}
    with pytest.raises(ValidationError) as info:
        parse_job_json(msgspec.json.encode(body))
    assert [str(p) for p in info.value.problems] == [
        'job "api" > group "g" > count: count must be 0 or more, got -2',
        'job "api" > group "g": a group needs at least one task "NAME" { driver = ... }',
    ]


def test_json_not_json() -> None:
    with pytest.raises(ValidationError) as info:
        parse_job_json(b"{nope")
    assert info.value.problems[0].message.startswith("not valid JSON")


def test_validate_job_on_struct() -> None:
    job = Job(id="x", task_groups=(TaskGroup(name="g", tasks=(Task(name="t", driver="qemu"),)),))
    assert [str(p) for p in validate_job(job)] == [
        'job "x" > group "g" > task "t" > driver: unknown driver \'qemu\';'
        " allowed: docker, exec, raw_exec"
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        parse_job_file(tmp_path / "absent.nomad")
    assert info.value.problems[0].location == str(tmp_path / "absent.nomad")
