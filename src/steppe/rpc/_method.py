"""A method's contract: its name on the wire and the exact types of its arguments and
result, shared by both ends so neither ever decodes into free-form objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import msgspec

R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class Method(Generic[R]):
    """``args`` is a tuple type (``tuple[str, int]``, ``tuple[()]``); ``result`` the
    return type, ``type(None)`` for none."""

    name: str
    args: Any
    result: type[R]
    _args_decoder: msgspec.msgpack.Decoder[Any] = field(init=False, repr=False)
    _result_decoder: msgspec.msgpack.Decoder[R] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_args_decoder", msgspec.msgpack.Decoder(self.args))
        object.__setattr__(self, "_result_decoder", msgspec.msgpack.Decoder(self.result))

    def decode_args(self, raw: bytes) -> tuple[Any, ...]:
        args: tuple[Any, ...] = self._args_decoder.decode(raw)
        return args

    def decode_result(self, raw: bytes) -> R:
        return self._result_decoder.decode(raw)


class Handlers(Protocol):
    """What an :class:`~steppe.rpc.RPCServer` serves: an object whose ``rpc_methods``
    is the allow-list; each entry names an async method of the same name."""

    @property
    def rpc_methods(self) -> Mapping[str, Method[Any]]: ...


def method_table(*methods: Method[Any]) -> dict[str, Method[Any]]:
    return {m.name: m for m in methods}
