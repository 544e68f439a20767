"""Consul-style commands: ``kv``, ``catalog``, ``members``, ``lock``, ``watch``, ``template``.

Like ``consul``'s own CLI they only talk HTTP to an agent: ``-http-addr``, else
``CONSUL_HTTP_ADDR`` / ``STEPPE_HTTP_ADDR``, else ``http://127.0.0.1:8500``.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import click

from steppe.errors import RemoteError, SteppeError, ValidationError

DEFAULT_ADDR = "http://127.0.0.1:8500"


class ConsulHTTP:
    def __init__(self, addr: str | None) -> None:
        addr = addr or DEFAULT_ADDR
        self.base = addr if "://" in addr else f"http://{addr}"

    def call(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 660.0
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.base.rstrip("/") + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return 404, dict(err.headers), b""
            raise RemoteError(err.code, err.read().decode(errors="replace").strip()) from err
        except (urllib.error.URLError, OSError) as exc:
            raise SteppeError(f"cannot reach the agent at {self.base}: {exc}") from exc

    def json(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        status, _, raw = self.call(method, path, data)
        return json.loads(raw) if status == 200 and raw else None


def _addr_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-http-addr",
        "http_addr",
        envvar=["CONSUL_HTTP_ADDR", "STEPPE_HTTP_ADDR"],
        help="Agent HTTP address (default http://127.0.0.1:8500).",
    )(fn)


def _q(key: str) -> str:
    return urllib.parse.quote(key)


# kv ------------------------------------------------------------------------------------
@click.group("kv")
def kv() -> None:
    """Read and write the KV store."""


@kv.command("get")
@click.argument("key", default="")
@click.option("-recurse", is_flag=True)
@click.option("-keys", "keys", is_flag=True)
@click.option("-separator", default="/")
@click.option("-detailed", is_flag=True)
@_addr_option
def kv_get(
    key: str, recurse: bool, keys: bool, separator: str, detailed: bool, http_addr: str | None
) -> None:
    api = ConsulHTTP(http_addr)
    if keys:
        for k in api.json("GET", f"/v1/kv/{_q(key)}?keys&separator={_q(separator)}") or []:
            click.echo(k)
        return
    entries = api.json("GET", f"/v1/kv/{_q(key)}" + ("?recurse" if recurse else ""))
    if not entries:
        raise SteppeError(f"No key exists at: {key}")
    for e in entries:
        value = base64.b64decode(e["Value"]).decode(errors="replace") if e.get("Value") else ""
        if detailed:
            for field in ("CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex"):
                click.echo(f"{field:<15} {e[field]}")
            click.echo(f"{'Session':<15} {e.get('Session', '-')}")
            click.echo(f"{'Value':<15} {value}")
        elif recurse:
            click.echo(f"{e['Key']}:{value}")
        else:
            click.echo(value)


@kv.command("put")
@click.argument("key")
@click.argument("value", required=False)
@click.option("-flags", type=int, default=0)
@click.option("-cas", is_flag=True)
@click.option("-modify-index", "modify_index", type=int, default=0)
@_addr_option
def kv_put(
    key: str, value: str | None, flags: int, cas: bool, modify_index: int, http_addr: str | None
) -> None:
    """VALUE, ``@file`` or ``-`` (stdin)."""
    if value is None or value == "-":
        data = sys.stdin.buffer.read()
    elif value.startswith("@"):
        with open(value[1:], "rb") as fh:
            data = fh.read()
    else:
        data = value.encode()
    query = f"?flags={flags}" + (f"&cas={modify_index}" if cas else "")
    _, _, raw = ConsulHTTP(http_addr).call("PUT", f"/v1/kv/{_q(key)}{query}", data)
    if raw.strip() != b"true":
        raise SteppeError(f"Failed to write {key!r}: the check-and-set index did not match")
    click.echo(f"Success! Data written to: {key}")


@kv.command("delete")
@click.argument("key", default="")
@click.option("-recurse", is_flag=True)
@click.option("-cas", is_flag=True)
@click.option("-modify-index", "modify_index", type=int, default=0)
@_addr_option
def kv_delete(key: str, recurse: bool, cas: bool, modify_index: int, http_addr: str | None) -> None:
    query = "?recurse" if recurse else (f"?cas={modify_index}" if cas else "")
    _, _, raw = ConsulHTTP(http_addr).call("DELETE", f"/v1/kv/{_q(key)}{query}")
    if raw.strip() != b"true":
        raise SteppeError(f"Failed to delete {key!r}: the check-and-set index did not match")
    click.echo(f"Success! Deleted key{'s under' if recurse else ''}: {key}")


@kv.command("export")
@click.argument("prefix", default="")
@_addr_option
def kv_export(prefix: str, http_addr: str | None) -> None:
    entries = ConsulHTTP(http_addr).json("GET", f"/v1/kv/{_q(prefix)}?recurse") or []
    out = [{"key": e["Key"], "flags": e["Flags"], "value": e.get("Value") or ""} for e in entries]
    click.echo(json.dumps(out, indent=2))


@kv.command("import")
@click.argument("data", default="-")
@_addr_option
def kv_import(data: str, http_addr: str | None) -> None:
    """DATA: the JSON of ``kv export``, ``@file`` or ``-`` (stdin)."""
    if data == "-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        with open(data[1:]) as fh:
            text = fh.read()
    else:
        text = data
    try:
        entries = json.loads(text)
        items = [(e["key"], int(e.get("flags", 0)), base64.b64decode(e["value"])) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError(f"import data: not the JSON of 'kv export' ({exc})") from exc
    api = ConsulHTTP(http_addr)
    for key, flags, value in items:
        api.call("PUT", f"/v1/kv/{_q(key)}?flags={flags}", value)
        click.echo(f"Imported: {key}")


# catalog, members ----------------------------------------------------------------------
@click.group("catalog")
def catalog() -> None:
    """Query the service catalog."""


@catalog.command("datacenters")
@_addr_option
def catalog_datacenters(http_addr: str | None) -> None:
    for dc in ConsulHTTP(http_addr).json("GET", "/v1/catalog/datacenters") or []:
        click.echo(dc)


@catalog.command("services")
@click.option("-tags", is_flag=True)
@_addr_option
def catalog_services(tags: bool, http_addr: str | None) -> None:
    services = ConsulHTTP(http_addr).json("GET", "/v1/catalog/services") or {}
    width = max((len(n) for n in services), default=0)
    for name, service_tags in services.items():
        click.echo(f"{name:<{width}}  {','.join(service_tags)}" if tags else name)


@catalog.command("nodes")
@_addr_option
def catalog_nodes(http_addr: str | None) -> None:
    nodes = ConsulHTTP(http_addr).json("GET", "/v1/catalog/nodes") or []
    rows = [("Node", "ID", "Address", "DC")] + [
        (n["Node"], (n["ID"] or "")[:8], n["Address"], n["Datacenter"]) for n in nodes
    ]
    _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.command("members")
@click.option("-wan", "wan", is_flag=True, help="The servers of every datacenter.")
@_addr_option
def members(http_addr: str | None, wan: bool) -> None:
    """The agents this agent knows."""
    path = "/v1/agent/members?wan=1" if wan else "/v1/agent/members"
    found = ConsulHTTP(http_addr).json("GET", path) or []
    rows = [("Node", "Address", "Status", "Type", "DC")]
    for m in found:
        status = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}.get(m.get("Status"), "?")
        tags = m.get("Tags", {})
        kind = "server" if tags.get("role") == "consul" else "client"
        rows.append((m["Name"], f"{m['Addr']}:{m['Port']}", status, kind, tags.get("dc", "")))
    _table(rows)


@click.command("join")
@click.option("-wan", "wan", is_flag=True, help="Join another datacenter's servers.")
@click.argument("addresses", nargs=-1, required=True)
@_addr_option
def join(http_addr: str | None, wan: bool, addresses: tuple[str, ...]) -> None:
    """Tell the catalog agent about other servers (-wan: of other datacenters)."""
    client = ConsulHTTP(http_addr)
    suffix = "?wan=1" if wan else ""
    for address in addresses:
        status, _, _ = client.call("PUT", f"/v1/agent/join/{address}{suffix}")
        if status == 404:
            raise SteppeError(f"the agent at {client.base} cannot join other agents")
    click.echo(f"Successfully joined cluster by contacting {len(addresses)} nodes.")


def register(cli_group: click.Group) -> None:
    """Adds the commands the main CLI does not define itself."""
    from steppe.cli._consul_watch import lock, template, watch

    for command in (kv, catalog, members, join, lock, watch, template):
        if command.name not in cli_group.commands:
            cli_group.add_command(command)
