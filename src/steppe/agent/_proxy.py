"""HTTP forwarding: a client-only agent answers Nomad's API by passing requests to a
server, and a server passes log requests to the node that has the logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from steppe.api._forward import forward
from steppe.api._http import error_middleware
from steppe.errors import RemoteError, SteppeError


def build_forwarding_app(
    servers: Callable[[], Sequence[str]],
    local: dict[str, Callable[[web.Request], object]],
) -> web.Application:
    """Serves the ``local`` routes here and forwards every other ``/v1/`` request to the
    first server that answers."""

    async def relay(request: web.Request) -> web.StreamResponse:
        candidates = list(servers())
        if not candidates:
            raise SteppeError("No known servers: this client has not found a server yet")
        last: Exception | None = None
        for server in candidates:
            try:
                return await forward(request, server)
            except RemoteError as exc:
                last = exc
        assert last is not None
        raise last

    app = web.Application(
        middlewares=[error_middleware], handler_args={"handler_cancellation": True}
    )
    for path, handler in local.items():
        app.router.add_route("*", path, handler)  # type: ignore[arg-type]
    app.router.add_route("*", "/v1/{tail:.*}", relay)
    return app
