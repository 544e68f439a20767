"""Serving aiohttp applications on the agent's listeners."""

from __future__ import annotations

from aiohttp import web

from steppe.errors import SteppeError


class ListenError(SteppeError):
    """A port the agent needs is taken or not allowed."""


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return runner
