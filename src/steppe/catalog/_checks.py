"""Health checks the local agent runs: tcp, http, script (args) and ttl.

Each runner reports ``(status, output)`` after every probe; the agent decides what to sync.
Status mapping is Consul's: an HTTP 2xx is passing, 429 warning, anything else critical;
a script exiting 0 is passing, 1 warning, anything else critical; a TTL check nobody
updated within its TTL turns critical.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from steppe.catalog._defs import NS, CheckDef
from steppe.structs import HEALTH_CRITICAL, HEALTH_PASSING, HEALTH_WARNING

log = logging.getLogger(__name__)

Report = Callable[[str, str, str], None]
"""(check ID, status, output)."""

_OUTPUT_LIMIT = 4096


class CheckRunner:
    def __init__(
        self,
        definition: CheckDef,
        report: Report,
        *,
        clock: Callable[[], float] = time.monotonic,
        enable_script_checks: bool = False,
    ) -> None:
        self.definition = definition
        self._report = report
        self._clock = clock
        self._scripts = enable_script_checks
        self._task: asyncio.Task[None] | None = None
        self._ttl_deadline = 0.0
        self._ttl_touched = asyncio.Event()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.definition.kind == "ttl":
            self._ttl_deadline = self._clock() + self.definition.ttl / NS
            self._task = loop.create_task(self._ttl_loop())
        else:
            self._task = loop.create_task(self._probe_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def ttl_touched(self) -> None:
        """A TTL check was updated through the API: its clock starts over."""
        self._ttl_deadline = self._clock() + self.definition.ttl / NS
        self._ttl_touched.set()

    async def _ttl_loop(self) -> None:
        while True:
            remaining = self._ttl_deadline - self._clock()
            if remaining <= 0:
                self._report(self.definition.check_id, HEALTH_CRITICAL, "TTL expired")
                self._ttl_touched.clear()
                await self._ttl_touched.wait()
                continue
            self._ttl_touched.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ttl_touched.wait(), remaining)

    async def _probe_loop(self) -> None:
        d = self.definition
        session = aiohttp.ClientSession() if d.kind == "http" else None
        try:
            while True:
                try:
                    status, output = await asyncio.wait_for(self._probe(session), d.timeout / NS)
                except TimeoutError:
                    status, output = (
                        HEALTH_CRITICAL,
                        f"Timed out ({d.timeout / NS:g}s) running check",
                    )
                self._report(d.check_id, status, output[:_OUTPUT_LIMIT])
                await asyncio.sleep(d.interval / NS)
        finally:
            if session is not None:
                await session.close()

    async def _probe(self, session: aiohttp.ClientSession | None) -> tuple[str, str]:
        d = self.definition
        if d.kind == "tcp":
            return await tcp_probe(d.target)
        if d.kind == "http":
            assert session is not None
            return await http_probe(session, d)
        if not self._scripts:
            return (
                HEALTH_CRITICAL,
                "script checks are disabled on this agent (enable_script_checks)",
            )
        return await script_probe(d.args)


async def tcp_probe(target: str) -> tuple[str, str]:
    host, _, port = target.rpartition(":")
    try:
        _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except (OSError, ValueError) as exc:
        return HEALTH_CRITICAL, f"dial tcp {target}: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return HEALTH_PASSING, f"TCP connect {target}: Success"


async def http_probe(session: aiohttp.ClientSession, d: CheckDef) -> tuple[str, str]:
    headers = {k: ", ".join(v) for k, v in d.header.items()}
    try:
        async with session.request(
            d.method, d.target, headers=headers, ssl=not d.tls_skip_verify
        ) as resp:
            body = (await resp.content.read(_OUTPUT_LIMIT)).decode("utf-8", "replace")
            code = resp.status
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return HEALTH_CRITICAL, f"{d.method} {d.target}: {exc}"
    output = f"HTTP {d.method} {d.target}: {code} Output: {body}"
    if 200 <= code < 300:
        return HEALTH_PASSING, output
    if code == 429:
        return HEALTH_WARNING, output
    return HEALTH_CRITICAL, output


async def script_probe(args: tuple[str, ...]) -> tuple[str, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        return HEALTH_CRITICAL, f"could not run {args[0]!r}: {exc}"
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    output = out.decode("utf-8", "replace")
    if proc.returncode == 0:
        return HEALTH_PASSING, output
    if proc.returncode == 1:
        return HEALTH_WARNING, output
    return HEALTH_CRITICAL, output
