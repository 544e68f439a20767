"""A template renders an haproxy backend list from a real dev server, validated by a real
``haproxy -c``, and follows instances as they come and go; the command runs only when the
output changed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.catalog.conftest import Agent, start_devserver, stop_process
from tests.support.waiting import async_wait_until

from steppe.errors import ValidationError
from steppe.template import Renderer, TemplateSpec

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

TEMPLATE = """\
global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 5s
  timeout server 5s
frontend www
  bind 127.0.0.1:{{ key_or_default("lb/port", "18080") }}
  default_backend web
backend web
{%- for s in service("web") %}
  server {{ s.ID }} {{ s.Address }}:{{ s.Port }} check
{%- endfor %}
# datacenters: {{ datacenters() | join(",") }}; greeting: {{ key("lb/greeting") }}
"""


@pytest.fixture
def agent() -> Iterator[Agent]:
    proc, handle = start_devserver()
    try:
        yield handle
    finally:
        stop_process(proc)


def _haproxy_ok(path: Path) -> bool:
    run = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, timeout=30)
    return run.returncode == 0


async def test_haproxy_backends_follow_instances(agent: Agent, tmp_path: Path) -> None:
    src, out, log = tmp_path / "in.tmpl", tmp_path / "haproxy.cfg", tmp_path / "runs.log"
    src.write_text(TEMPLATE)
    spec = TemplateSpec.parse(f"{src}:{out}:{HAPROXY} -c -q -f {out} && echo ok >> {log}")
    renderer = Renderer(agent.url, [spec], wait=(0.05, 0.5))
    for i in (1, 2):
        body = {"ID": f"web-{i}", "Name": "web", "Address": "127.0.0.1", "Port": 9000 + i}
        await asyncio.to_thread(agent.put, "/v1/agent/service/register", body)
    task = asyncio.create_task(renderer.run())
    try:
        await asyncio.sleep(0)
        assert not out.exists()
        await asyncio.to_thread(agent.put, "/v1/kv/lb/greeting", "hello")

        async def servers() -> list[str]:
            text = out.read_text() if out.exists() else ""
            return [
                line.split()[1] for line in text.splitlines() if line.strip().startswith("server ")
            ]

        async def has(expected: list[str]) -> bool:
            return await servers() == expected

        await async_wait_until(lambda: has(["web-1", "web-2"]), what="the first render")
        assert _haproxy_ok(out)
        assert "greeting: hello" in out.read_text() and "datacenters: dc1" in out.read_text()
        await asyncio.to_thread(agent.put, "/v1/agent/service/deregister/web-1")
        await async_wait_until(lambda: has(["web-2"]), what="web-1 to leave the backend")
        assert _haproxy_ok(out)
        body = {"ID": "web-3", "Name": "web", "Address": "127.0.0.1", "Port": 9003}
        await asyncio.to_thread(agent.put, "/v1/agent/service/register", body)
        await async_wait_until(lambda: has(["web-2", "web-3"]), what="web-3 to join")
        assert _haproxy_ok(out)
        renders = renderer.renders
        await asyncio.to_thread(agent.put, "/v1/kv/unrelated", "x")
        await asyncio.to_thread(agent.put, "/v1/agent/service/register", body)
        await async_wait_until(
            lambda: log.exists() and len(log.read_text().splitlines()) == 3,
            what="the command to have run once per changed output",
        )
        assert renderer.renders >= renders
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_template_errors_name_the_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tmpl"
    bad.write_text("line one\n{% for x in %}\n")
    with pytest.raises(ValidationError, match=r"bad\.tmpl:2"):
        Renderer("http://127.0.0.1:1", [TemplateSpec.parse(f"{bad}:{tmp_path / 'o'}")])
    with pytest.raises(ValidationError, match=r"in\.tmpl:out"):
        TemplateSpec.parse("only-one-part")
    sandboxed = TemplateSpec(destination=str(tmp_path / "o"), contents="{{ ''.__class__.__mro__ }}")
    with pytest.raises(ValidationError):
        Renderer("http://127.0.0.1:1", [sandboxed]).render_text(0)
