from __future__ import annotations

import pytest

from steppe.dns import DNSConfig, parse_dns_config
from steppe.errors import ValidationError


def test_defaults_follow_consul() -> None:
    config = parse_dns_config({})
    assert config == DNSConfig()
    assert config.domain == "consul."
    assert config.port == 8600
    assert config.udp_answer_limit == 3
    assert config.allow_stale is True


def test_full_agent_config() -> None:
    config = parse_dns_config(
        {
            "domain": "Disco.Example",
            "recursors": ["127.0.0.1:5353", "10.1.1.1", "[::1]:53"],
            "ports": {"dns": 8601, "http": 1},
            "addresses": [{"dns": "0.0.0.0"}],
            "datacenter": "ignored-here",
            "dns_config": [
                {
                    "node_ttl": "30s",
                    "service_ttl": {"*": "5s", "web": "1m", "api-*": "10s"},
                    "allow_stale": False,
                    "max_stale": "10s",
                    "udp_answer_limit": 10,
                    "enable_truncate": False,
                    "recursor_timeout": "500ms",
                    "only_passing": True,
                }
            ],
        }
    )
    assert config.domain == "disco.example."
    assert config.recursors == (("127.0.0.1", 5353), ("10.1.1.1", 53), ("::1", 53))
    assert (config.port, config.bind_address) == (8601, "0.0.0.0")
    assert config.node_ttl == 30
    assert config.ttl_for_service("web") == 60
    assert config.ttl_for_service("api-v2") == 10
    assert config.ttl_for_service("db") == 5
    assert (config.allow_stale, config.max_stale, config.recursor_timeout) == (False, 10.0, 0.5)
    assert (config.udp_answer_limit, config.enable_truncate) == (10, False)


def test_every_bad_value_is_reported_with_its_key() -> None:
    with pytest.raises(ValidationError) as info:
        parse_dns_config(
            {
                "recursors": ["nonsense:53", "127.0.0.1:99999"],
                "ports": {"dns": "x"},
                "dns_config": {
                    "node_ttl": "-5s",
                    "service_ttl": {"web": "soon"},
                    "allow_stale": "yes",
                    "udp_answer_limit": 0,
                    "bogus": 1,
                },
            }
        )
    locations = {p.location for p in info.value.problems}
    assert locations == {
        "recursors[0]",
        "recursors[1]",
        "ports.dns",
        "dns_config.node_ttl",
        "dns_config.service_ttl.web",
        "dns_config.allow_stale",
        "dns_config.udp_answer_limit",
        "dns_config.bogus",
    }


def test_unset_service_ttl_is_zero() -> None:
    assert DNSConfig().ttl_for_service("web") == 0
