"""The client's memory across restarts: ``<data_dir>/client/state.json``.

It holds each allocation with its task handles, task states and restart counters, so a
restarted agent re-attaches to the tasks still running instead of starting them twice.
Writes go to a temporary file renamed over the old one, so a crash never leaves half a file.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import msgspec

from steppe.client._alloc_runner import PersistedAlloc
from steppe.errors import SteppeError

log = logging.getLogger(__name__)

STATE_VERSION = 1


class ClientState(msgspec.Struct, frozen=True):
    version: int = STATE_VERSION
    allocs: dict[str, PersistedAlloc] = msgspec.field(default_factory=dict)


_decoder = msgspec.json.Decoder(ClientState)
_encoder = msgspec.json.Encoder()


def client_dir(data_dir: Path) -> Path:
    return data_dir / "client"


def state_path(data_dir: Path) -> Path:
    return client_dir(data_dir) / "state.json"


def load_state(data_dir: Path) -> ClientState:
    """The saved state, or an empty one when there is none; an unreadable file is a
    clear error (starting afresh would duplicate every running task)."""
    path = state_path(data_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ClientState()
    except OSError as exc:
        raise SteppeError(f"cannot read client state {path}: {exc}") from exc
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SteppeError(
            f"client state {path} is corrupt ({exc}); move it away to start afresh"
        ) from exc


def save_state(data_dir: Path, state: ClientState) -> None:
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".state.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(_encoder.encode(state))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _persisted_id(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if text:
        try:
            return str(uuid.UUID(text))
        except ValueError as exc:
            raise SteppeError(f"{path} does not hold a UUID: {text[:40]!r}") from exc
    value = str(uuid.uuid4())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    return value


def node_identity(data_dir: Path) -> tuple[str, str]:
    """The node's ID and secret ID, created once and kept in ``<data_dir>/client/`` so a
    restarted agent is the same node to the servers."""
    directory = client_dir(data_dir)
    return _persisted_id(directory / "node-id"), _persisted_id(directory / "secret-id")
