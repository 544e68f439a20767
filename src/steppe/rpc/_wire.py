"""The wire format: 4-byte big-endian length, then one msgpack message.

A request is ``{id, method, args}``; a response is ``{id, ok}`` or ``{id, error}``.
Payloads stay ``msgspec.Raw`` in the envelope so each side decodes them with the exact
types the method declares, never into free-form objects. Response id 0 is reserved for
"this connection is being closed, and here is why" (an oversized or malformed frame),
because the server cannot know which request such a frame belonged to.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from steppe.errors import (
    BackendError,
    ConflictError,
    DriverError,
    NotFoundError,
    Problem,
    RemoteError,
    SteppeError,
    ValidationError,
)
from steppe.server import NotLeaderError

MAX_FRAME = 64 * 1024 * 1024
"""Largest message either side sends or accepts: a node's full allocation list with
jobs fits many times over; anything bigger is a bug or an attack."""

CONNECTION_ID = 0
_HEADER = struct.Struct(">I")


class RPCError(SteppeError):
    """The RPC itself failed (as opposed to the server answering with an error)."""


class UnreachableError(RPCError):
    """No answer: connection refused, reset or closed, or the call timed out."""


class FrameTooLargeError(RPCError):
    """A message exceeds the frame size limit; it is never sent or read."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} of {size} bytes exceeds the RPC frame limit of {limit} bytes")


class ProtocolError(RPCError):
    """The peer sent something that is not a valid message of this protocol."""


class Request(msgspec.Struct, frozen=True):
    id: int
    method: str
    args: Any = ()


class RawRequest(msgspec.Struct, frozen=True):
    id: int
    method: str
    args: msgspec.Raw = msgspec.Raw()


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: str
    message: str
    leader: str | None = None
    problems: list[tuple[str, str]] = []


class Response(msgspec.Struct, frozen=True, omit_defaults=True):
    id: int
    ok: Any = None
    error: ErrorInfo | None = None


class RawResponse(msgspec.Struct, frozen=True):
    id: int
    ok: msgspec.Raw = msgspec.Raw()
    error: ErrorInfo | None = None


_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(RawRequest)
_response_decoder = msgspec.msgpack.Decoder(RawResponse)


def encode_frame(message: Request | Response, limit: int, what: str) -> bytes:
    body = _encoder.encode(message)
    if len(body) > limit:
        raise FrameTooLargeError(what, len(body), limit)
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, limit: int, what: str) -> bytes | None:
    """The next message body, or None at a clean end of stream between frames."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError(f"{what}: connection closed inside a frame header") from exc
        return None
    (size,) = _HEADER.unpack(header)
    if size > limit:
        raise FrameTooLargeError(what, size, limit)
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"{what}: connection closed inside a {size}-byte frame") from exc


def decode_request(body: bytes) -> RawRequest:
    try:
        return _request_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed request frame: {exc}") from exc


def decode_response(body: bytes) -> RawResponse:
    try:
        return _response_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed response frame: {exc}") from exc


# errors across the wire ------------------------------------------------------------
_KINDS: tuple[tuple[type[SteppeError], str], ...] = (
    (NotLeaderError, "not_leader"),
    (ValidationError, "validation"),
    (NotFoundError, "not_found"),
    (ConflictError, "conflict"),
    (BackendError, "backend"),
    (DriverError, "driver"),
    (FrameTooLargeError, "frame_too_large"),
    (ProtocolError, "protocol"),
)


def error_info(exc: SteppeError) -> ErrorInfo:
    """How a deliberate error travels; its message is already meant for users."""
    kind = next((k for cls, k in _KINDS if isinstance(exc, cls)), "internal")
    if isinstance(exc, NotLeaderError):
        return ErrorInfo(kind, str(exc), leader=exc.leader)
    if isinstance(exc, ValidationError):
        problems = [(p.location, p.message) for p in exc.problems]
        return ErrorInfo(kind, str(exc), problems=problems)
    return ErrorInfo(kind, str(exc))


def error_from_info(info: ErrorInfo, server: str) -> SteppeError:
    """The same exception type the server raised, so callers handle remote and
    in-process servers alike (a NotFoundError still means "register again")."""
    simple: dict[str, type[SteppeError]] = {
        "not_found": NotFoundError,
        "conflict": ConflictError,
        "backend": BackendError,
        "driver": DriverError,
        "protocol": ProtocolError,
    }
    if info.kind in simple:
        return simple[info.kind](info.message)
    if info.kind == "not_leader":
        return NotLeaderError(info.leader or None)
    if info.kind == "validation":
        return ValidationError([Problem(loc, msg) for loc, msg in info.problems] or info.message)
    if info.kind == "frame_too_large":
        return ProtocolError(f"server {server} closed the connection: {info.message}")
    return RemoteError(500, f"server {server}: {info.message}")
