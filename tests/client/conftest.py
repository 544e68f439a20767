from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.client._support import kill_handles

from steppe.client import AllocRunner
from steppe.drivers._raw_exec import RawExecDriver
from steppe.structs import Allocation, Node

MakeRunner = Callable[..., AllocRunner]


@pytest.fixture
def raw_exec() -> RawExecDriver:
    return RawExecDriver(enabled=True)


@pytest.fixture
def node() -> Node:
    return Node(
        id="node-1",
        name="n1",
        datacenter="dc1",
        attributes={"unique.network.ip-address": "127.0.0.1", "kernel.name": "linux"},
        meta={"rack": "r1"},
    )


@pytest.fixture
async def make_runner(
    tmp_path: Path, raw_exec: RawExecDriver, node: Node
) -> AsyncIterator[MakeRunner]:
    """Alloc runners over the real raw_exec driver; each is killed and its tasks reaped at
    the end of the test, whatever happened."""
    runners: list[AllocRunner] = []

    def make(alloc: Allocation, **kw: Any) -> AllocRunner:
        kw.setdefault("node", node)
        kw.setdefault("drivers", {"raw_exec": raw_exec})
        kw.setdefault("data_dir", tmp_path)
        kw.setdefault("services", None)
        kw.setdefault("templates", None)
        kw.setdefault("clock", __import__("time").time)
        kw.setdefault("on_change", lambda _runner: None)
        runner = AllocRunner(alloc, **kw)
        runners.append(runner)
        return runner

    try:
        yield make
    finally:
        handles = [t.handle for r in runners for t in r.runners.values()]
        for runner in runners:
            runner.kill("test over")
        for runner in runners:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(runner.wait(), 15)
        handles += [t.handle for r in runners for t in r.runners.values()]
        kill_handles(handles)
