"""Relaying an HTTP request to another agent, streaming its answer back: how a
server shows logs that live on a client node, and how a client-only agent answers
Nomad's API through a server."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from steppe.errors import RemoteError

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


FORWARDED_HEADER = "X-Steppe-Forwarded"
"""Set on relayed requests, so a misrouted request is answered instead of bouncing."""


async def forward(
    request: web.Request,
    base: str,
    path: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Relays ``request`` to ``base`` (``host:port``), streaming the answer back."""
    url = f"http://{base}{path or request.path}"
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    headers.update(extra_headers or {})
    body = await request.read()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                request.method, url, params=request.query, data=body or None, headers=headers
            ) as upstream,
        ):
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_HEADERS:
                    response.headers[key] = value
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, OSError) as exc:
        raise RemoteError(502, f"cannot reach {base}: {exc}") from exc
