"""What every command shares: where the agent is, and the exit code to end with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from steppe.cli._http import APIClient, nomad_address


@dataclass
class Ctx:
    address: str | None = None
    exit_code: int = 0

    def nomad(self) -> APIClient:
        return APIClient(nomad_address(self.address))


pass_ctx = click.make_pass_decorator(Ctx, ensure=True)


def _set_address(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.ensure_object(Ctx).address = value
    return value


def address_option(fn: Any) -> Any:
    """``-address``: the agent's HTTP address (else $STEPPE_ADDR, $NOMAD_ADDR, 127.0.0.1:4646)."""
    return click.option(
        "-address",
        "address",
        expose_value=False,
        callback=_set_address,
        is_eager=True,
        help="HTTP address of the agent (env STEPPE_ADDR / NOMAD_ADDR).",
    )(fn)
