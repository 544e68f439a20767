"""The docker driver's config rules and container body: pure, no engine needed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from steppe.drivers import PortMapping, TaskSpec
from steppe.drivers import _docker_config as cfg
from steppe.drivers._cpu import cfs_quota_us
from steppe.drivers._docker_logs import resume_point, split_timestamp


def spec(config: dict[str, Any], **kw: Any) -> TaskSpec:
    base = Path("/var/lib/steppe/alloc/a1")
    fields: dict[str, Any] = {
        "alloc_id": "a1",
        "job_id": "web",
        "group": "g",
        "task_name": "nginx",
        "config": config,
        "env": {"A": "1"},
        "alloc_dir": base,
        "task_dir": base / "nginx",
        "stdout_path": base / "alloc/logs/nginx.stdout.0",
        "stderr_path": base / "alloc/logs/nginx.stderr.0",
        "ports": (PortMapping("web", "127.0.0.1", 23456, 23456),),
    }
    fields.update(kw)
    return TaskSpec(**fields)


def test_image_is_required_and_named() -> None:
    assert cfg.validate({}) == ["config.image: required"]


def test_each_bad_field_is_named() -> None:
    problems = cfg.validate(
        {
            "image": "x",
            "args": "not-a-list",
            "port_map": [{"web": "eighty"}],
            "force_pull": "yes",
            "volumes": ["nocolon"],
            "labels": {"a": 1},
            "bogus": 1,
        }
    )
    assert problems == [
        "config.bogus: not an option of the docker driver",
        "config.args: must be a list of strings",
        "config.force_pull: must be true or false",
        "config.port_map.web: 'eighty' is not a port number (1-65535)",
        "config.labels: must be a map of strings",
        "config.volumes[0]: 'nocolon' is not host_path:container_path[:ro]",
    ]


def test_seed_port_map_block_as_hcl_gives_it() -> None:
    config = {"image": "nginx:latest", "port_map": [{"web": 80, "__is_block__": True}]}
    assert cfg.validate(config) == []
    body = cfg.create_body(spec(config), config)
    assert body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "23456"}],
        "80/udp": [{"HostIp": "127.0.0.1", "HostPort": "23456"}],
    }
    assert set(body["ExposedPorts"]) == {"80/tcp", "80/udp"}
    env = {"NOMAD_PORT_web": "23456", "NOMAD_ADDR_web": "127.0.0.1:23456"}
    body = cfg.create_body(spec(config, env=env), config)
    assert body["Env"] == ["NOMAD_PORT_web=80", "NOMAD_ADDR_web=127.0.0.1:23456"]


def test_modern_ports_publish_only_listed_labels() -> None:
    ports = (
        PortMapping("web", "127.0.0.1", 20001, 8080),
        PortMapping("admin", "127.0.0.1", 20002, 20002),
    )
    config = {"image": "x", "ports": ["web"]}
    body = cfg.create_body(spec(config, ports=ports), config)
    assert list(body["HostConfig"]["PortBindings"]) == ["8080/tcp", "8080/udp"]
    with pytest.raises(ValueError, match=r"config.ports: db not among .*admin, web"):
        cfg.create_body(spec({"image": "x", "ports": ["db"]}, ports=ports), {"ports": ["db"]})


def test_resources_become_limits() -> None:
    config = {"image": "x"}
    host = cfg.create_body(spec(config, cpu_mhz=500, memory_mb=64), config)["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 64 * cfg.MB
    assert host["CpuShares"] == 500
    assert host["CpuQuota"] == cfs_quota_us(500)
    assert host["Init"] is True
    over = cfg.create_body(spec(config, memory_mb=64, memory_max_mb=128), config)["HostConfig"]
    assert over["Memory"] == 128 * cfg.MB
    assert over["MemoryReservation"] == 64 * cfg.MB


def test_command_args_entrypoint_mounts_labels() -> None:
    config = {
        "image": "x",
        "command": "sh",
        "args": ["-c", "true"],
        "entrypoint": ["/bin/env"],
        "work_dir": "/srv",
        "volumes": ["data:/data", "/etc/hosts:/etc/hosts:ro"],
        "labels": [{"team": "web"}],
    }
    body = cfg.create_body(spec(config), config)
    assert body["Cmd"] == ["sh", "-c", "true"]
    assert body["Entrypoint"] == ["/bin/env"]
    assert body["WorkingDir"] == "/srv"
    assert body["Env"] == ["A=1"]
    assert body["HostConfig"]["Binds"] == [
        "/var/lib/steppe/alloc/a1/alloc:/alloc",
        "/var/lib/steppe/alloc/a1/nginx/local:/local",
        "/var/lib/steppe/alloc/a1/nginx/secrets:/secrets",
        "/var/lib/steppe/alloc/a1/nginx/data:/data",
        "/etc/hosts:/etc/hosts:ro",
    ]
    assert body["Labels"] == {
        "team": "web",
        cfg.LABEL_ALLOC: "a1",
        cfg.LABEL_TASK: "nginx",
        cfg.LABEL_JOB: "web",
    }


def test_signal_names() -> None:
    assert cfg.parse_signal("SIGINT") == "SIGINT"
    assert cfg.parse_signal("term") == "SIGTERM"
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        cfg.parse_signal("SIGNOPE")


def test_log_timestamps_give_an_exact_resume_point(tmp_path: Path) -> None:
    stamp, text = split_timestamp("2026-11-22T01:20:01.454920784Z tick 1\n")
    assert text == "tick 1\n"
    assert stamp == 1795310401_454920784
    assert split_timestamp("2026-11-22T01:20:01Z x")[0] == 1795310401_000000000
    assert split_timestamp("no stamp here") == (None, "no stamp here")
    log = tmp_path / "task.stdout.0"
    assert resume_point(log) is None
    log.write_text(text)
    os.utime(log, ns=(stamp, stamp))
    assert resume_point(log) == "1795310401.454920785"
