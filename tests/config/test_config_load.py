"""Agent config files: the seed's three, directories merged, HCL and JSON, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from steppe.config import (
    AgentConfig,
    dev_config,
    load_config,
    load_config_text,
    with_overrides,
)
from steppe.errors import Problem, ValidationError
from steppe.structs import NS

FIXTURES = Path(__file__).parent / "fixtures"


def test_seed_nomad_server() -> None:
    config = load_config([FIXTURES / "nomad-server.hcl"])
    assert (config.region, config.datacenter, config.data_dir) == ("eu", "ams2", "/tmp/nomad")
    assert (config.log_level, config.bind_addr, config.leave_on_terminate) == (
        "DEBUG",
        "0.0.0.0",
        True,
    )
    assert config.advertise.http == "[public_ip_address]:4646"
    assert config.advertise.rpc == "[public_ip_address]:4647"
    assert config.advertise.serf == "[public_ip_address]:4648"
    assert (config.server.enabled, config.server.bootstrap_expect) == (True, 3)
    assert not config.client.enabled
    assert not config.catalog_server
    consul = config.consul
    assert consul.address == "127.0.0.1:8500"
    assert (consul.server_service_name, consul.client_service_name) == ("nomad", "nomad-client")
    assert consul.server_auto_join and consul.client_auto_join and consul.auto_advertise
    assert config.advertised_http() == "[public_ip_address]:4646"


def test_seed_nomad_client() -> None:
    config = load_config([FIXTURES / "nomad-client.hcl"])
    assert config.client.enabled
    assert not config.server.enabled
    assert config.consul.address == "[private_ip_address_other_node]:8500"
    assert config.datacenter == "ams2"
    assert not config.driver_enabled("raw_exec")
    assert config.driver_enabled("docker")


def test_seed_consul_server_json() -> None:
    config = load_config([FIXTURES / "consul-server.json"])
    assert config.catalog_server
    assert config.bootstrap_expect == 1
    assert not config.server.enabled
    assert (config.name, config.node_name()) == ("ams2-server-01", "ams2-server-01")
    assert (config.client_addr, config.data_dir) == ("0.0.0.0", "/tmp/consul")
    assert config.advertise_addr == "[private_ip_address]"
    assert config.advertise_addr_wan == "[public_ip_address]"
    assert config.catalog_http_bind() == ("0.0.0.0", 8500)
    assert config.dns_bind() == ("0.0.0.0", 8600)


def test_default_ports() -> None:
    config = AgentConfig()
    assert (config.ports.http, config.ports.rpc, config.ports.serf) == (4646, 4647, 4648)
    ports = config.ports
    assert (ports.catalog_http, ports.dns, ports.server, ports.serf_lan, ports.serf_wan) == (
        8500,
        8600,
        8300,
        8301,
        8302,
    )
    assert config.http_bind() == ("0.0.0.0", 4646)


def test_directory_merges_sorted_files(tmp_path: Path) -> None:
    (tmp_path / "10-base.hcl").write_text(
        'datacenter = "dc1"\nregion = "eu"\n'
        'client {\n  enabled = true\n  meta { rack = "r1" }\n}\n'
        "ports {\n  http = 5646\n  rpc = 5647\n}\n"
    )
    (tmp_path / "20-override.json").write_text(
        '{"datacenter": "dc2", "client": {"node_class": "big", "meta": {"zone": "z"}},'
        ' "ports": {"http": 6646}}'
    )
    (tmp_path / "notes.txt").write_text("not a config")
    config = load_config([tmp_path])
    assert (config.datacenter, config.region) == ("dc2", "eu")
    assert config.client.enabled
    assert config.client.node_class == "big"
    assert config.client.meta == {"rack": "r1", "zone": "z"}
    assert (config.ports.http, config.ports.rpc, config.ports.serf) == (6646, 5647, 4648)


def test_seed_directory_loads_as_one_agent() -> None:
    config = load_config([FIXTURES])
    assert config.catalog_server and config.server.enabled and config.client.enabled
    assert config.region == "eu"


def test_every_key_of_the_brief(tmp_path: Path) -> None:
    text = """
name = "n1"
bind_addr = "127.0.0.2"
enable_script_checks = true
retry_join = ["10.0.0.1"]
retry_join_wan = ["10.1.0.1"]
start_join = ["10.0.0.2"]
recursors = ["1.1.1.1"]
domain = "steppe."
ui = true
addresses { http = "127.0.0.3" }
server {
  enabled = true
  data_dir = "/srv/s"
  retry_join = ["a:4648"]
  server_join {
    retry_join = ["b:4648"]
    retry_interval = "15s"
  }
}
client {
  enabled = true
  servers = ["127.0.0.1:4647"]
  options = { "driver.raw_exec.enable" = "1" }
  network_interface = "lo"
  cpu_total_compute = 4000
  memory_total_mb = 2048
  reserved {
    cpu = 100
    memory = 256
  }
}
plugin "docker" {
  config {
    endpoint = "unix:///tmp/docker.sock"
  }
}
docker { endpoint = "unix:///ignored.sock" }
etcd { endpoints = ["http://127.0.0.1:2379"] }
dns_config {
  node_ttl = "10s"
  service_ttl = { "*" = "5s", web = "30s" }
  allow_stale = false
  max_stale = "5s"
  udp_answer_limit = 5
  enable_truncate = true
}
telemetry {
  statsd_address = "127.0.0.1:8125"
}
"""
    config = load_config_text(text, "agent.hcl")
    assert config.name == "n1"
    assert config.http_bind() == ("127.0.0.3", 4646)
    assert config.rpc_bind() == ("127.0.0.2", 4647)
    assert config.enable_script_checks and config.ui
    assert (config.retry_join, config.retry_join_wan, config.start_join) == (
        ("10.0.0.1",),
        ("10.1.0.1",),
        ("10.0.0.2",),
    )
    assert (config.recursors, config.domain) == (("1.1.1.1",), "steppe.")
    assert config.server.join_addresses() == ("a:4648", "b:4648")
    assert config.server.server_join.retry_interval == 15 * NS
    assert config.client.servers == ("127.0.0.1:4647",)
    assert config.driver_enabled("raw_exec")
    assert (config.client.reserved.cpu, config.client.reserved.memory) == (100, 256)
    assert (config.client.cpu_total_compute, config.client.memory_total_mb) == (4000, 2048)
    assert config.docker_endpoint() == "unix:///tmp/docker.sock"
    assert config.etcd.endpoints == ("http://127.0.0.1:2379",)
    dns = config.dns_config
    assert (dns.node_ttl, dns.max_stale, dns.udp_answer_limit) == (10 * NS, 5 * NS, 5)
    assert dns.service_ttl == {"*": 5 * NS, "web": 30 * NS}
    assert (dns.ttl_for("web"), dns.ttl_for("db")) == (30 * NS, 5 * NS)
    assert not dns.allow_stale and dns.enable_truncate


def test_leaving_on_signals_nomad_and_consul_spellings() -> None:
    assert not AgentConfig().leave_on_interrupt and not AgentConfig().leave_on_terminate
    nomad = load_config_text("leave_on_interrupt = true\n")
    assert (nomad.leave_on_interrupt, nomad.leave_on_terminate) == (True, False)
    consul = load_config_text('{"skip_leave_on_interrupt": false, "leave_on_terminate": true}')
    assert (consul.leave_on_interrupt, consul.leave_on_terminate) == (True, True)
    assert not load_config_text('{"skip_leave_on_interrupt": true}').leave_on_interrupt


def test_nomad_style_ui_block_and_plugin_flag() -> None:
    config = load_config_text(
        'ui {\n  enabled = true\n}\nplugin "raw_exec" {\n  config {\n    enabled = true\n  }\n}\n'
    )
    assert config.ui
    assert config.driver_enabled("raw_exec")
    assert config.plugin_config("raw_exec") == {"enabled": True}


def test_dev_config() -> None:
    config = dev_config()
    assert config.dev_mode
    assert config.server.enabled and config.client.enabled and config.catalog_server
    assert (config.datacenter, config.region, config.data_dir) == ("dc1", "global", "")
    assert config.http_bind() == ("127.0.0.1", 4646)
    assert config.catalog_http_bind() == ("127.0.0.1", 8500)
    assert config.driver_enabled("raw_exec")


def test_dev_base_under_files(tmp_path: Path) -> None:
    path = tmp_path / "extra.hcl"
    path.write_text('datacenter = "lab"\n')
    config = load_config([path], base=dev_config())
    assert config.datacenter == "lab"
    assert config.dev_mode and config.driver_enabled("raw_exec")


def test_with_overrides() -> None:
    base = load_config([FIXTURES / "nomad-client.hcl"])
    config = with_overrides(
        base,
        server=True,
        bootstrap_expect=3,
        data_dir="/srv/x",
        bind="127.0.0.9",
        dc="lon1",
        region="us",
        node="box",
        servers=["127.0.0.1:4647"],
        retry_join=["127.0.0.2"],
        http_port=7646,
        client=None,
    )
    assert config.server.enabled and config.server.bootstrap_expect == 3
    assert config.client.enabled
    assert (config.data_dir, config.bind_addr, config.datacenter, config.region) == (
        "/srv/x",
        "127.0.0.9",
        "lon1",
        "us",
    )
    assert config.name == "box"
    assert config.client.servers == ("127.0.0.1:4647",)
    assert config.server.retry_join == ("127.0.0.2",)
    assert config.http_bind() == ("127.0.0.9", 7646)
    assert config.consul.address == "[private_ip_address_other_node]:8500"
    dev = with_overrides(base, dev=True)
    assert dev.dev_mode and dev.catalog_server and dev.driver_enabled("raw_exec")
    assert dev.datacenter == "ams2"


def test_unknown_override() -> None:
    with pytest.raises(ValidationError) as info:
        with_overrides(AgentConfig(), bogus_flag=1)
    assert info.value.problems == [Problem("-bogus-flag", "unknown option")]


def _problems(paths: list[Path]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_config(paths)
    return [str(p) for p in info.value.problems]


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    hcl = tmp_path / "nomad.hcl"
    hcl.write_text(
        'log_level = "LOUD"\ndata_dir = "/tmp/nomad"\n\nserverr {\n  enabled = true\n}\n'
        'server {\n  enabled = "yes"\n  bootstrap_expect = -1\n  retry_joinn = ["a"]\n}\n'
        "ports {\n  http = 70000\n}\n"
    )
    js = tmp_path / "consul.json"
    js.write_text(
        '{\n  "datacenter": "ams2",\n  "server": true,\n  "dns_config": {\n'
        '    "service_ttl": {"*": "5s"},\n    "node_tll": "1s"\n  }\n}\n'
    )
    assert _problems([tmp_path]) == [
        f"{js}:6: dns_config: unknown key 'node_tll' in dns_config; did you mean 'node_ttl'?",
        f"{hcl}:1: log_level: unknown log level 'LOUD'; allowed: TRACE, DEBUG, INFO, WARN, ERROR",
        f"{hcl}:4: unknown key 'serverr' in top level; did you mean 'server'?",
        f'{hcl}:8: server > enabled: expected true or false, got the string "yes"',
        f"{hcl}:9: server > bootstrap_expect: bootstrap_expect must be 0 or more",
        f"{hcl}:10: server: unknown key 'retry_joinn' in server; did you mean 'retry_join'?",
        f"{hcl}:13: ports > http: port must be 1-65535 (or -1 to turn it off), got 70000",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    path = tmp_path / "c.hcl"
    path.write_text('datacenter = ["a"]\nclient {\n  servers = "one"\n}\nretry_join = 5\n')
    assert _problems([path]) == [
        f"{path}:1: datacenter: expected a string, got a list",
        f'{path}:3: client > servers: expected a list of strings, got the string "one"',
        f"{path}:5: retry_join: expected a list of strings, got the number 5",
    ]


def test_syntax_errors_and_missing_paths(tmp_path: Path) -> None:
    bad_hcl = tmp_path / "a.hcl"
    bad_hcl.write_text("server {\n  enabled = \n}\n")
    bad_json = tmp_path / "b.json"
    bad_json.write_text('{"datacenter": }')
    assert _problems([tmp_path, tmp_path / "absent.hcl"]) == [
        f"{tmp_path / 'absent.hcl'}: no such config file or directory",
        f"{bad_hcl}:2:13: unexpected '}}'; expected a value",
        f"{bad_json}:1:16: not valid JSON: Expecting value",
    ]
