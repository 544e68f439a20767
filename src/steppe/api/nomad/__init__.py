"""The Nomad-compatible HTTP API."""

from steppe.api.nomad._app import NomadAPI, NomadAPIHolder, build_nomad_app

__all__ = ["NomadAPI", "NomadAPIHolder", "build_nomad_app"]
