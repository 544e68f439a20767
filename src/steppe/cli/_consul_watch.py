"""The long-running Consul commands: ``lock``, ``watch`` and ``template``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import urllib.parse
from typing import Any

import click

from steppe.errors import SteppeError, ValidationError


def _api(http_addr: str | None) -> Any:
    from steppe.cli._consul_cmds import ConsulHTTP

    return ConsulHTTP(http_addr)


def _addr(fn: Any) -> Any:
    return click.option("-http-addr", "http_addr", envvar=["CONSUL_HTTP_ADDR", "STEPPE_HTTP_ADDR"])(
        fn
    )


@click.command("lock", context_settings={"ignore_unknown_options": True})
@click.argument("prefix")
@click.argument("command", nargs=-1, required=True)
@click.option("-name", default="steppe lock")
@_addr
def lock(prefix: str, command: tuple[str, ...], name: str, http_addr: str | None) -> None:
    """Holds the lock PREFIX/.lock while COMMAND runs (one holder at a time)."""
    api = _api(http_addr)
    body = {"Name": name, "TTL": "15s", "LockDelay": "1s"}
    sid = api.json("PUT", "/v1/session/create", body)["ID"]
    key = urllib.parse.quote(prefix.rstrip("/") + "/.lock")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(5.0):
            api.call("PUT", f"/v1/session/renew/{sid}")

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        index = 0
        while True:
            _, _, raw = api.call("PUT", f"/v1/kv/{key}?acquire={sid}", name.encode())
            if raw.strip() == b"true":
                break
            status, headers, _ = api.call("GET", f"/v1/kv/{key}?index={index}&wait=15s")
            index = int(headers.get("X-Consul-Index", "0")) if status in (200, 404) else 0
        code = subprocess.call(list(command))
    finally:
        stop.set()
        api.call("PUT", f"/v1/kv/{key}?release={sid}", b"")
        api.call("PUT", f"/v1/session/destroy/{sid}")
    raise SystemExit(code)


_WATCH_PATHS = {
    "key": lambda o: f"/v1/kv/{urllib.parse.quote(o['key'])}",
    "keyprefix": lambda o: f"/v1/kv/{urllib.parse.quote(o['prefix'])}?recurse",
    "service": lambda o: (
        f"/v1/health/service/{urllib.parse.quote(o['service'])}"
        + ("?passing" if o["passingonly"] else "")
    ),
}


@click.command("watch")
@click.option("-type", "kind", type=click.Choice(sorted(_WATCH_PATHS)), required=True)
@click.option("-key", default="")
@click.option("-prefix", default="")
@click.option("-service", default="")
@click.option("-passingonly", is_flag=True)
@click.argument("handler", nargs=-1)
@_addr
def watch(
    kind: str,
    key: str,
    prefix: str,
    service: str,
    passingonly: bool,
    handler: tuple[str, ...],
    http_addr: str | None,
) -> None:
    """Prints the watched data (or pipes it as JSON to HANDLER) on every change."""
    opts = {"key": key, "prefix": prefix, "service": service, "passingonly": passingonly}
    if not opts[{"key": "key", "keyprefix": "prefix", "service": "service"}[kind]]:
        raise ValidationError(f"-type {kind} needs -{'prefix' if kind == 'keyprefix' else kind}")
    path = _WATCH_PATHS[kind](opts)
    api = _api(http_addr)
    index, last = 0, None
    sep = "&" if "?" in path else "?"
    while True:
        status, headers, raw = api.call("GET", f"{path}{sep}index={index}&wait=5m")
        data = json.loads(raw) if status == 200 and raw else None
        new_index = int(headers.get("X-Consul-Index", "0"))
        if data != last or index == 0:
            last = data
            payload = json.dumps(data, indent=2)
            if handler:
                subprocess.run(list(handler), input=payload.encode(), check=False)
            else:
                click.echo(payload)
        index = new_index if new_index >= index else 0


@click.command("template")
@click.option("-template", "templates", multiple=True, required=True, help="in:out[:command]")
@click.option("-wait", default="", help="min[:max] quiet period, e.g. 2s:10s")
@click.option("-once", is_flag=True, help="Render once and exit.")
@_addr
def template(templates: tuple[str, ...], wait: str, once: bool, http_addr: str | None) -> None:
    """Renders templates from the catalog and re-renders them on changes."""
    from steppe.api._http import parse_duration
    from steppe.template import Renderer, TemplateSpec, run_command

    specs = [TemplateSpec.parse(t) for t in templates]
    low, _, high = wait.partition(":")
    bounds = (
        parse_duration(low, what="-wait") if low else 0.0,
        parse_duration(high, what="-wait") if high else 0.0,
    )
    if bounds[1] and bounds[1] < bounds[0]:
        raise ValidationError("-wait: max must not be below min")
    renderer = Renderer(_api(http_addr).base, specs, wait=(bounds[0], bounds[1] or 4 * bounds[0]))

    async def go() -> None:
        if once:
            try:
                for spec in await renderer.render_once():
                    await run_command(spec)
            finally:
                await renderer.close()
        else:
            await renderer.run()

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise SteppeError(f"template: {exc}") from exc
