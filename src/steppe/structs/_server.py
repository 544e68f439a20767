"""Scheduler servers as the region knows them: one row per live server, kept alive by
a lease, so a server that dies drops out of ``server members`` on its own."""

from __future__ import annotations

from steppe.structs._job import Base
from steppe.structs._naming import nomad_names


class ServerMember(Base, frozen=True, rename=nomad_names(rpc_addr="RPCAddr", http_addr="HTTPAddr")):
    name: str = ""
    region: str = ""
    datacenter: str = ""
    rpc_addr: str = ""
    http_addr: str = ""
    build: str = ""
    bootstrap_expect: int = 0
