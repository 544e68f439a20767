"""A catalog-only dev agent: ``python -m steppe.api.consul._devserver --port 8500``.

In-memory backend, one local agent, the Consul HTTP API. It lets the catalog's tests and
``bench/kv.py`` drive a real process over HTTP until ``steppe agent -dev`` serves the same
app. Prints ``ready <port>`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from aiohttp import web

from steppe.api.consul import build_consul_app
from steppe.backend import MemoryBackend
from steppe.catalog import (
    CATALOG_TABLES,
    CatalogServer,
    LocalAgent,
    SessionLimits,
    catalog_root,
)
from steppe.state import StateStore


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--dc", default="dc1")
    p.add_argument("--node", default="dev")
    p.add_argument("--enable-script-checks", action="store_true")
    p.add_argument("--session-ttl-min", type=float, default=10.0)
    p.add_argument("--heartbeat-ttl", type=float, default=10.0)
    p.add_argument("--sync-interval", type=float, default=30.0)
    p.add_argument("--lease-check-interval", type=float, default=0.25)
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    backend = MemoryBackend(lease_check_interval=args.lease_check_interval)
    store = StateStore(backend, CATALOG_TABLES, catalog_root(args.dc))
    await store.start()
    catalog = CatalogServer(
        store, args.dc, args.node, session_limits=SessionLimits(min_ttl=args.session_ttl_min)
    )
    await catalog.start()
    agent = LocalAgent(
        catalog,
        args.node,
        args.bind,
        enable_script_checks=args.enable_script_checks,
        sync_interval=args.sync_interval,
        heartbeat_ttl=args.heartbeat_ttl,
    )
    await agent.start()
    runner = web.AppRunner(
        build_consul_app(catalog, agent), handler_cancellation=True, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, args.bind, args.port, backlog=1024)
    await site.start()
    print(f"ready {args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await agent.stop()
        await catalog.stop()
        await store.stop()
        await backend.close()


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        sys.exit(f"devserver: {exc}")


if __name__ == "__main__":
    main()
