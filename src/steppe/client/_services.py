"""Registering a running task's ``service`` stanzas with the local catalog agent.

The client talks to the catalog the way Nomad talks to Consul: through the agent's HTTP
API (``/v1/agent/service/register``), so Steppe's own catalog agent and a real Consul
agent both work. IDs follow Nomad's ``_nomad-task-<alloc>-<task>-<service>-<port>`` so a
service can be traced back to its allocation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import msgspec

from steppe.client._env import interpolate
from steppe.drivers import PortMapping
from steppe.errors import RemoteError, SteppeError
from steppe.structs import Service, ServiceCheck, go_duration

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0


class CheckRegistration(msgspec.Struct, frozen=True, omit_defaults=True, rename="pascal"):
    name: str
    check_id: str = msgspec.field(default="", name="CheckID")
    interval: str = ""
    timeout: str = ""
    tcp: str = msgspec.field(default="", name="TCP")
    http: str = msgspec.field(default="", name="HTTP")
    method: str = ""
    header: dict[str, list[str]] = msgspec.field(default_factory=dict)
    args: list[str] = msgspec.field(default_factory=list)
    status: str = ""
    tls_skip_verify: bool = msgspec.field(default=False, name="TLSSkipVerify")


class ServiceRegistration(msgspec.Struct, frozen=True, omit_defaults=True, rename="pascal"):
    """The body of Consul's ``PUT /v1/agent/service/register``."""

    id: str = msgspec.field(name="ID")
    name: str
    tags: list[str] = msgspec.field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    checks: list[CheckRegistration] = msgspec.field(default_factory=list)


class ServiceRegistrar(Protocol):
    async def register(self, service: ServiceRegistration) -> None: ...

    async def deregister(self, service_id: str) -> None: ...


def service_id(alloc_id: str, owner: str, service: str, port_label: str) -> str:
    """Nomad's ID: ``owner`` is the task name, or ``group-<name>`` for group services."""
    return f"_nomad-task-{alloc_id}-{owner}-{service}-{port_label}"


def build_registration(
    service: Service,
    *,
    sid: str,
    ports: tuple[PortMapping, ...],
    default_ip: str,
    values: Mapping[str, str],
    meta: Mapping[str, str],
) -> ServiceRegistration:
    """The registration for one ``service`` stanza: its port label resolved to the host's
    address and port, names and tags interpolated, checks in Consul's terms."""
    by_label = {p.label: p for p in ports}
    port = by_label.get(service.port_label)
    address = service.address or (port.host_ip if port else default_ip)
    checks = [
        _check(check, sid=sid, service=service, by_label=by_label, address=address, values=values)
        for check in service.checks
    ]
    return ServiceRegistration(
        id=sid,
        name=interpolate(service.name, values),
        tags=[interpolate(t, values) for t in service.tags],
        address=address,
        port=port.host_port if port else _literal_port(service.port_label),
        meta={**meta, **{k: interpolate(v, values) for k, v in service.meta.items()}},
        checks=checks,
    )


def _literal_port(label: str) -> int:
    return int(label) if label.isdigit() else 0


def _check(
    check: ServiceCheck,
    *,
    sid: str,
    service: Service,
    by_label: Mapping[str, PortMapping],
    address: str,
    values: Mapping[str, str],
) -> CheckRegistration:
    port = by_label.get(check.port_label or service.port_label)
    host_port = port.host_port if port else _literal_port(check.port_label or service.port_label)
    host = port.host_ip if port and not service.address else address
    name = check.name or f'service: "{interpolate(service.name, values)}" check'
    digest = hashlib.sha1(f"{sid}/{name}/{check.type}".encode()).hexdigest()
    common = CheckRegistration(
        name=name,
        check_id=f"_nomad-check-{digest}",
        interval=go_duration(check.interval) if check.interval else "",
        timeout=go_duration(check.timeout) if check.timeout else "",
        status=check.initial_status,
    )
    kind = check.type.lower()
    if kind == "tcp":
        return msgspec.structs.replace(common, tcp=f"{host}:{host_port}")
    if kind == "http":
        scheme = check.protocol or "http"
        path = interpolate(check.path or "/", values)
        path = path if path.startswith("/") else f"/{path}"
        return msgspec.structs.replace(
            common,
            http=f"{scheme}://{host}:{host_port}{path}",
            method=check.method,
            header=check.header,
            tls_skip_verify=check.tls_skip_verify,
        )
    if kind == "script":
        args = [interpolate(a, values) for a in (check.command, *check.args) if a]
        return msgspec.structs.replace(common, args=args)
    raise SteppeError(f"service {service.name!r}: check type {check.type!r} is not supported")


class ConsulAgentRegistrar:
    """Registers services through a catalog agent's HTTP API at ``base_url``
    (``http://127.0.0.1:8500``); errors become :class:`RemoteError`/:class:`SteppeError`."""

    def __init__(self, base_url: str, *, token: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"X-Consul-Token": token} if token else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT), headers=self._headers
            )
        return self._session

    async def register(self, service: ServiceRegistration) -> None:
        await self._put("/v1/agent/service/register", msgspec.json.encode(service))

    async def deregister(self, service_id: str) -> None:
        await self._put(f"/v1/agent/service/deregister/{service_id}", b"")

    async def _put(self, path: str, body: bytes) -> None:
        url = self.base_url + path
        try:
            async with self._client().put(url, data=body) as resp:
                if resp.status >= 400:
                    text = (await resp.text()).strip()
                    raise RemoteError(resp.status, f"PUT {url}: {resp.status} {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SteppeError(f"catalog agent at {self.base_url} unreachable: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
