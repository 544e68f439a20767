"""The Nomad-compatible HTTP API."""

from steppe.api.nomad._app import NomadAPI, NomadAPIHolder, build_nomad_app
from steppe.api.nomad._logs import stream_logs

__all__ = ["NomadAPI", "NomadAPIHolder", "build_nomad_app", "stream_logs"]
