"""RPC between agents: length-prefixed msgpack frames over TCP (optionally TLS).

``RPCServer`` serves an allow-listed handler object (``ServerEndpoint`` for a scheduler
server); ``RPCClient`` is one multiplexed connection; ``RemoteServerAPI`` is the
client agent's ``ServerAPI`` over RPC, following the leader and failing over between
servers.
"""

from steppe.rpc._client import RPCClient, parse_address, with_default_port
from steppe.rpc._endpoint import MAX_BLOCK, SERVER_METHODS, LeaderClient, ServerEndpoint
from steppe.rpc._method import Handlers, Method, method_table
from steppe.rpc._remote import RemoteServerAPI
from steppe.rpc._server import RPCServer
from steppe.rpc._wire import (
    MAX_FRAME,
    FrameTooLargeError,
    ProtocolError,
    RPCError,
    UnreachableError,
)

__all__ = [
    "MAX_BLOCK",
    "MAX_FRAME",
    "SERVER_METHODS",
    "FrameTooLargeError",
    "Handlers",
    "LeaderClient",
    "Method",
    "ProtocolError",
    "RPCClient",
    "RPCError",
    "RPCServer",
    "RemoteServerAPI",
    "ServerEndpoint",
    "UnreachableError",
    "method_table",
    "parse_address",
    "with_default_port",
]
