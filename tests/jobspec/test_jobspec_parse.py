"""The seed job file, verbatim, the modern shapes, and JSON round trips."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from steppe.jobspec import parse_job, parse_job_file, parse_job_json
from steppe.structs import NS, Port, to_json

SEED = Path(__file__).parent / "fixtures" / "nginx.nomad"


def test_seed_job_structure() -> None:
    job = parse_job_file(SEED)
    assert (job.id, job.name, job.region, job.type) == ("nginx", "nginx", "eu", "service")
    assert job.datacenters == ("ams2", "lon1")
    (group,) = job.task_groups
    assert group.name == "webserver"
    assert group.count == 4
    restart = group.restart_policy
    assert restart is not None
    assert (restart.attempts, restart.interval, restart.delay, restart.mode) == (
        10,
        5 * 60 * NS,
        25 * NS,
        "delay",
    )
    (task,) = group.tasks
    assert task.name == "nginx"
    assert task.driver == "docker"
    assert task.restart_policy == restart
    assert task.config == {"image": "nginx:latest", "port_map": [{"web": 80}]}
    assert (task.resources.cpu, task.resources.memory_mb) == (500, 64)
    assert task.resources.networks == ()
    (network,) = group.networks
    assert network.mbits == 10
    assert network.dynamic_ports == (Port(label="web", to=80),)
    assert network.reserved_ports == ()
    (service,) = task.services
    assert (service.name, service.port_label) == ("nginx", "web")
    (check,) = service.checks
    assert (check.name, check.type, check.interval, check.timeout) == (
        "alive",
        "tcp",
        10 * NS,
        2 * NS,
    )


def test_seed_matches_shared_fixture() -> None:
    shared = Path("/work/shared/fixtures/nginx.nomad")
    if shared.exists():
        assert shared.read_text() == SEED.read_text()


def test_json_round_trip_plain_and_wrapped() -> None:
    job = parse_job_file(SEED)
    assert parse_job_json(to_json(job)) == job
    wrapped = msgspec.json.encode({"Job": msgspec.to_builtins(job)})
    assert parse_job_json(wrapped) == job
    assert parse_job_json(wrapped.decode()) == job


def test_json_job_file_is_recognised(tmp_path: Path) -> None:
    job = parse_job_file(SEED)
    path = tmp_path / "nginx.json"
    path.write_bytes(msgspec.json.encode({"Job": msgspec.to_builtins(job)}))
    assert parse_job_file(path) == job


def test_json_job_gets_nomad_defaults() -> None:
    body = {
        "Job": {
            "ID": "api",
            "Type": "batch",
            "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "exec"}]}],
        }
    }
    job = parse_job_json(msgspec.json.encode(body))
    assert job.name == "api"
    group = job.task_groups[0]
    assert group.restart_policy is not None
    assert group.restart_policy.attempts == 3
    assert group.tasks[0].restart_policy == group.restart_policy
    assert group.reschedule_policy is not None
    assert group.reschedule_policy.delay_function == "constant"


MODERN = """
job "web" {
  datacenters = ["dc1"]
  type = "service"
  priority = 70
  namespace = "apps"
  all_at_once = true
  meta = { team = "edge", tier = 1 }

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }
  constraint {
    distinct_hosts = true
  }
  affinity {
    attribute = "${node.datacenter}"
    value     = "dc1"
    weight    = -50
  }
  spread {
    attribute = "${node.datacenter}"
    target "dc1" { percent = 60 }
    target "dc2" { percent = 40 }
  }
  update {
    max_parallel = 1
  }

  group "frontend" {
    count = 3

    network {
      port "http" { to = 80 }
      port "db" { static = 5432 }
    }

    reschedule {
      attempts = 5
      delay_function = "constant"
    }

    ephemeral_disk {
      size = 500
      sticky = true
    }

    service {
      name = "frontend"
      port = "http"
      tags = ["urlprefix-/", "v1"]
      check {
        type     = "http"
        path     = "/health"
        interval = "1h30m"
        timeout  = "100ms"
        method   = "GET"
        header { Authorization = ["Basic xyz"] }
      }
    }

    task "server" {
      driver = "raw_exec"
      user = "nobody"
      kill_timeout = "20s"
      kill_signal = "SIGINT"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo ${NOMAD_PORT_http}"]
      }

      env {
        PORT = "${NOMAD_PORT_http}"
        DEBUG = true
      }

      restart {
        attempts = 1
      }

      template {
        data = <<EOT
listen {{ env "NOMAD_PORT_http" }}
EOT
        destination = "local/app.conf"
        change_mode = "signal"
        change_signal = "SIGHUP"
        splay = "10s"
      }

      logs {
        max_files = 3
        max_file_size = 5
      }

      resources {
        cpu    = 200
        memory = 128
        memory_max = 256
      }

      service {
        port = "db"
        check {
          type = "script"
          command = "/bin/true"
          args = ["-v"]
          interval = "5s"
          timeout = "1s"
        }
      }
    }
  }
}
"""


def test_modern_job_level_fields() -> None:
    job = parse_job(MODERN, "web.hcl")
    assert (job.priority, job.namespace, job.all_at_once) == (70, "apps", True)
    assert job.meta == {"team": "edge", "tier": "1"}
    first, second = job.constraints
    assert (first.l_target, first.operand, first.r_target) == ("${attr.kernel.name}", "=", "linux")
    assert second.operand == "distinct_hosts"
    assert job.affinities[0].weight == -50
    (spread,) = job.spreads
    assert [(t.value, t.percent) for t in spread.spread_target] == [("dc1", 60), ("dc2", 40)]
    assert parse_job_json(to_json(job)) == job


def test_modern_group_network_and_policies() -> None:
    (group,) = parse_job(MODERN, "web.hcl").task_groups
    (net,) = group.networks
    assert net.dynamic_ports == (Port(label="http", to=80),)
    assert net.reserved_ports == (Port(label="db", value=5432),)
    assert group.reschedule_policy is not None
    assert group.reschedule_policy.attempts == 5
    assert group.reschedule_policy.delay_function == "constant"
    assert (group.ephemeral_disk.size_mb, group.ephemeral_disk.sticky) == (500, True)
    (service,) = group.services
    assert service.tags == ("urlprefix-/", "v1")
    (check,) = service.checks
    assert (check.type, check.path, check.method) == ("http", "/health", "GET")
    assert (check.interval, check.timeout) == (5400 * NS, NS // 10)
    assert check.header == {"Authorization": ["Basic xyz"]}
    assert check.name == 'service: "frontend" check'


def test_modern_task() -> None:
    (group,) = parse_job(MODERN, "web.hcl").task_groups
    (task,) = group.tasks
    assert (task.user, task.kill_timeout, task.kill_signal) == ("nobody", 20 * NS, "SIGINT")
    assert task.config["args"] == ["-c", "echo ${NOMAD_PORT_http}"]
    assert task.env == {"PORT": "${NOMAD_PORT_http}", "DEBUG": "true"}
    assert task.restart_policy is not None and group.restart_policy is not None
    assert task.restart_policy.attempts == 1
    assert task.restart_policy.delay == group.restart_policy.delay
    (tmpl,) = task.templates
    assert tmpl.embedded_tmpl.startswith('listen {{ env "NOMAD_PORT_http" }}')
    assert (tmpl.dest_path, tmpl.change_mode, tmpl.change_signal, tmpl.splay) == (
        "local/app.conf",
        "signal",
        "SIGHUP",
        10 * NS,
    )
    assert (task.log_config.max_files, task.log_config.max_file_size_mb) == (3, 5)
    resources = task.resources
    assert (resources.cpu, resources.memory_mb, resources.memory_max_mb) == (200, 128, 256)
    (service,) = task.services
    assert service.name == "web-frontend-server"
    assert service.checks[0].args == ("-v",)


@pytest.mark.parametrize(
    ("job_type", "attempts", "has_reschedule"),
    [("service", 2, True), ("batch", 3, True), ("system", 2, False)],
)
def test_defaults_follow_job_type(job_type: str, attempts: int, has_reschedule: bool) -> None:
    text = f'job "j" {{\n type = "{job_type}"\n group "g" {{ task "t" {{ driver = "exec" }} }}\n}}'
    job = parse_job(text)
    group = job.task_groups[0]
    assert group.restart_policy is not None
    assert (group.restart_policy.attempts, group.restart_policy.mode) == (attempts, "fail")
    assert (group.reschedule_policy is not None) is has_reschedule
    assert job.datacenters == ("*",)
    assert group.count == 1
    task = group.tasks[0]
    assert (task.resources.cpu, task.resources.memory_mb) == (100, 300)


def test_constraint_shortcuts() -> None:
    text = """job "j" {
  constraint { attribute = "${attr.os.version}"  version = ">= 1.2" }
  constraint { attribute = "${attr.unique.hostname}" regexp = "^web" }
  constraint { distinct_property = "${meta.rack}" }
  constraint { attribute = "${attr.driver.docker}" operator = "is_set" }
  group "g" { task "t" { driver = "docker" } }
}"""
    job = parse_job(text)
    assert [(c.operand, c.l_target, c.r_target) for c in job.constraints] == [
        ("version", "${attr.os.version}", ">= 1.2"),
        ("regexp", "${attr.unique.hostname}", "^web"),
        ("distinct_property", "${meta.rack}", ""),
        ("is_set", "${attr.driver.docker}", ""),
    ]


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("25s", 25 * NS),
        ("5m", 300 * NS),
        ("1h30m", 5400 * NS),
        ("100ms", NS // 10),
        ("1.5s", 3 * NS // 2),
        ("0", 0),
    ],
)
def test_durations(text: str, ns: int) -> None:
    from steppe.jobspec import parse_duration

    assert parse_duration(text) == ns
