"""The Nomad-compatible HTTP API."""

from steppe.api.nomad._app import build_nomad_app
from steppe.api.nomad._context import NomadAPI, NomadAPIHolder
from steppe.api.nomad._logs import cat_file, stream_logs

__all__ = ["NomadAPI", "NomadAPIHolder", "build_nomad_app", "cat_file", "stream_logs"]
