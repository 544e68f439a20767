"""The CLI's HTTP client. The CLI reaches agents only through their HTTP APIs, like
``nomad`` and ``consul`` do, so anything it shows is also available to scripts."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from steppe.errors import RemoteError, SteppeError

DEFAULT_NOMAD_ADDR = "http://127.0.0.1:4646"


class CLIError(SteppeError):
    """A problem to report to the user in one line, exit code 1."""


def nomad_address(flag: str | None) -> str:
    addr = flag or os.environ.get("STEPPE_ADDR") or os.environ.get("NOMAD_ADDR")
    addr = addr or DEFAULT_NOMAD_ADDR
    return addr if "://" in addr else f"http://{addr}"


class APIClient:
    def __init__(self, address: str, timeout: float = 330.0) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return (
            self.address + path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        )

    def _open(self, method: str, path: str, params: dict[str, Any] | None, body: Any) -> Any:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self._url(path, params), data=data, method=method)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            message = exc.read().decode(errors="replace").strip() or exc.reason
            raise RemoteError(exc.code, message) from exc
        except urllib.error.URLError as exc:
            raise CLIError(f"cannot reach the agent at {self.address}: {exc.reason}") from exc
        except OSError as exc:
            raise CLIError(f"cannot reach the agent at {self.address}: {exc}") from exc

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> tuple[Any, dict[str, str]]:
        with self._open(method, path, params, body) as response:
            raw = response.read()
            headers = dict(response.headers.items())
        if not raw:
            return None, headers
        try:
            return json.loads(raw), headers
        except ValueError:
            return raw.decode(errors="replace"), headers

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params)[0]

    def put(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("PUT", path, params, body)[0]

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params, body)[0]

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params)[0]

    def stream(self, path: str, **params: Any) -> Iterator[bytes]:
        with self._open("GET", path, params, None) as response:
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    return
                yield chunk
