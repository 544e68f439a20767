"""What every Nomad API handler shares: the agent's context, and how a request names a
namespace or an object by (a prefix of) its ID."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from steppe.api._http import BlockingQuery, blocking_query, flag, json_response
from steppe.errors import BackendError, NotFoundError, ValidationError
from steppe.server import Server
from steppe.state import StateSnapshot

CONTEXT: web.AppKey[NomadAPIHolder] = web.AppKey("nomad_api")


@dataclass
class NomadAPIHolder:
    """The API's context, set once the server's store is ready: a server that is still
    forming its cluster already answers peering and join requests (``server join`` is
    how servers without ``retry_join`` come to form one), and everything else with 503."""

    api: NomadAPI | None = None
    join: Callable[[list[str]], Awaitable[int]] | None = None


@dataclass
class NomadAPI:
    """What the HTTP layer needs from the agent it serves."""

    server: Server
    agent_self: Callable[[], dict[str, Any]]
    members: Callable[[], list[dict[str, Any]]]
    peers: Callable[[], list[str]]
    alloc_dir: Callable[[str], Any] | None = None
    """Returns the local directory of an allocation this agent's client runs, or None."""
    regions: list[str] = field(default_factory=list)
    raft_configuration: Callable[[], Awaitable[list[dict[str, Any]] | None]] | None = None
    """The store's members; None (or answering None) when the store is this process."""

    def leader_headers(self, index: int) -> dict[str, str]:
        return {
            "X-Nomad-Index": str(max(index, 1)),
            "X-Nomad-KnownLeader": "true" if self.server.leader_addr else "false",
            "X-Nomad-LastContact": "0",
        }

    async def read(self, request: web.Request, tables: list[str]) -> StateSnapshot:
        """A snapshot honouring ``?index=&wait=`` (blocking) and ``?consistent``."""
        query: BlockingQuery = blocking_query(request)
        store = self.server.store
        if flag(request, "consistent"):
            await store.consistent_snapshot()
        if query.blocking:
            return await store.block(tables, query.index, query.wait)
        return store.snapshot()

    def respond(self, snap: StateSnapshot, tables: list[str], body: Any) -> web.Response:
        return json_response(body, headers=self.leader_headers(snap.table_index(*tables)))


def api_of(request: web.Request) -> NomadAPI:
    api = request.app[CONTEXT].api
    if api is None:
        raise BackendError("No cluster leader: the servers have not formed their store yet")
    return api


def namespace(request: web.Request) -> str:
    return request.query.get("namespace", "default") or "default"


def find(items: list[Any], ident: str, what: str) -> Any:
    """By full ID, or by a unique prefix of it (as the CLI allows short IDs)."""
    exact = [i for i in items if i.id == ident]
    if exact:
        return exact[0]
    matches = [i for i in items if i.id.startswith(ident)] if len(ident) >= 1 else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"{what} not found")
    raise ValidationError(f"{what} ID {ident!r} is ambiguous: {len(matches)} match")
