"""One place that turns structs into bytes and back: JSON for the HTTP APIs,
msgpack for the state backend and the RPC."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from steppe.errors import Problem, ValidationError

T = TypeVar("T")

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
_json_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def to_json(obj: Any) -> bytes:
    return _json_encoder.encode(obj)


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def from_json(data: bytes | str, typ: type[T], *, what: str = "body") -> T:
    """Decodes and type-checks; a wrong shape becomes a ValidationError naming the path."""
    decoder = _json_decoders.get(typ)
    if decoder is None:
        decoder = _json_decoders[typ] = msgspec.json.Decoder(typ)
    try:
        return decoder.decode(data)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise ValidationError(Problem(what, _readable(exc))) from exc
    except msgspec.DecodeError as exc:
        raise ValidationError(Problem(what, f"not valid JSON: {exc}")) from exc


def convert(obj: Any, typ: type[T], *, what: str = "body") -> T:
    try:
        return msgspec.convert(obj, typ)
    except msgspec.ValidationError as exc:
        raise ValidationError(Problem(what, _readable(exc))) from exc


def to_msgpack(obj: Any) -> bytes:
    return _msgpack_encoder.encode(obj)


def from_msgpack(data: bytes, typ: type[T]) -> T:
    decoder = _msgpack_decoders.get(typ)
    if decoder is None:
        decoder = _msgpack_decoders[typ] = msgspec.msgpack.Decoder(typ)
    return decoder.decode(data)  # type: ignore[no-any-return]


def _readable(exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.Job.TaskGroups[0].Count`"
    return str(exc).replace("`", "'")
