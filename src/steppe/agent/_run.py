"""``steppe agent``: flags and config files to a running agent."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from steppe.agent._agent import Agent, run_until_signalled
from steppe.config import AgentConfig, dev_config, load_config, with_overrides
from steppe.errors import SteppeError, ValidationError

_FLAG_NAMES = {
    "datacenter": "dc",
    "node_name": "node",
    "bind_addr": "bind",
    "consul_http_port": "catalog_http_port",
}


def config_from_flags(flags: dict[str, Any]) -> AgentConfig:
    flags = dict(flags)
    dev = bool(flags.pop("dev", False))
    paths: list[Path] = [*flags.pop("config_paths", ()), *flags.pop("config_dirs", ())]
    flags.pop("join", None)
    base = load_config(paths) if paths else (dev_config() if dev else AgentConfig())
    overrides: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None or value == () or value is False:
            continue
        key = _FLAG_NAMES.get(name, name)
        overrides[key] = list(value) if isinstance(value, tuple) else value
    return with_overrides(base, dev=dev or None, **overrides)


def run_agent_from_flags(flags: dict[str, Any]) -> int:
    try:
        config = config_from_flags(flags)
    except ValidationError as exc:
        for problem in exc.problems:
            print(f"Error: {problem}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(run_until_signalled(Agent(config)))
    except SteppeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
