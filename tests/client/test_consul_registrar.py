"""ConsulAgentRegistrar against Steppe's real catalog agent process, over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from tests.support.waiting import async_wait_until

from steppe.client import ConsulAgentRegistrar, ServiceRegistration
from steppe.client._services import CheckRegistration
from steppe.errors import RemoteError, SteppeError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def catalog_url() -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "steppe.api.consul._devserver",
        "--port",
        str(port),
        "--sync-interval",
        "0.2",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"ready"), line
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return json.loads(await resp.text())


async def test_register_check_and_deregister(catalog_url: str) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    registrar = ConsulAgentRegistrar(catalog_url)
    sid = "_nomad-task-a1-web-web-http"
    check = CheckRegistration(name="alive", check_id="c1", tcp=f"127.0.0.1:{port}", interval="1s")
    service = ServiceRegistration(
        id=sid, name="web", tags=["v1"], address="127.0.0.1", port=port, checks=[check]
    )
    try:
        await registrar.register(service)
        services = await get_json(f"{catalog_url}/v1/agent/services")
        assert services[sid]["Service"] == "web"
        assert services[sid]["Port"] == port

        async def passing() -> Any:
            return await get_json(f"{catalog_url}/v1/health/service/web?passing")

        found = await async_wait_until(passing, what="check passing")
        assert found[0]["Service"]["ID"] == sid
        await registrar.deregister(sid)
        assert sid not in await get_json(f"{catalog_url}/v1/agent/services")
    finally:
        listener.close()
        await registrar.aclose()


async def test_errors_are_steppe_errors(catalog_url: str) -> None:
    registrar = ConsulAgentRegistrar(catalog_url)
    try:
        bad = ServiceRegistration(id="x", name="x", checks=[CheckRegistration(name="c")])
        with pytest.raises(RemoteError) as info:
            await registrar.register(bad)
        assert info.value.status == 400
    finally:
        await registrar.aclose()
    nobody = ConsulAgentRegistrar(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(SteppeError, match="unreachable"):
            await nobody.deregister("x")
    finally:
        await nobody.aclose()
