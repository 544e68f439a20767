"""The Nomad-compatible HTTP API."""

from steppe.api.nomad._app import NomadAPI, build_nomad_app

__all__ = ["NomadAPI", "build_nomad_app"]
