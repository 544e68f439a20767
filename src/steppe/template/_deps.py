"""What a template reads from the catalog, and the blocking-query watcher for each.

A dependency is found by rendering: a template function that has no data yet records what
it needed, and the renderer starts a watcher for it. Each watcher long-polls one HTTP
endpoint with ``?index=`` so re-renders happen when — and only when — an answer changes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dep:
    kind: str
    """service, services, key, tree, datacenters."""
    arg: str = ""
    tag: str = ""
    dc: str = ""

    def path(self) -> str:
        dc = f"dc={quote(self.dc)}&" if self.dc else ""
        if self.kind == "service":
            tag = f"tag={quote(self.tag)}&" if self.tag else ""
            return f"/v1/health/service/{quote(self.arg)}?{dc}{tag}passing"
        if self.kind == "services":
            return f"/v1/catalog/services?{dc}"
        if self.kind == "key":
            return f"/v1/kv/{quote(self.arg)}?{dc}"
        if self.kind == "tree":
            return f"/v1/kv/{quote(self.arg)}?{dc}recurse"
        return "/v1/catalog/datacenters?"


def shape(dep: Dep, status: int, body: Any) -> Any:
    """The HTTP answer as the template functions hand it out."""
    if dep.kind == "key":
        if status == 404:
            return None
        value = body[0].get("Value")
        return base64.b64decode(value).decode("utf-8", "replace") if value else ""
    if dep.kind == "tree":
        if status == 404:
            return []
        return [
            {
                "Key": e["Key"],
                "Value": base64.b64decode(e["Value"]).decode("utf-8", "replace")
                if e.get("Value")
                else "",
                "Flags": e.get("Flags", 0),
            }
            for e in body
        ]
    if dep.kind == "service":
        return [
            {
                "ID": e["Service"]["ID"],
                "Name": e["Service"]["Service"],
                "Address": e["Service"]["Address"] or e["Node"]["Address"],
                "Port": e["Service"]["Port"],
                "Tags": e["Service"]["Tags"],
                "Meta": e["Service"]["Meta"],
                "Node": e["Node"]["Node"],
                "NodeAddress": e["Node"]["Address"],
                "Status": "passing",
            }
            for e in body
        ]
    if dep.kind == "services":
        return [{"Name": name, "Tags": tags} for name, tags in sorted(body.items())]
    return body


class Watcher:
    """Long-polls one dependency; calls ``changed`` whenever its shaped answer changes."""

    def __init__(
        self,
        client: aiohttp.ClientSession,
        base_url: str,
        dep: Dep,
        changed: Callable[[Dep, Any], None],
        wait: str = "60s",
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + dep.path()
        self._dep = dep
        self._changed = changed
        self._wait = wait
        self._task: asyncio.Task[None] | None = None

    async def fetch(self, index: int = 0) -> tuple[int, Any]:
        url = self._url + (f"&index={index}&wait={self._wait}" if index else "")
        async with self._client.get(url) as resp:
            if resp.status not in (200, 404):
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=await resp.text()
                )
            body = await resp.json() if resp.status == 200 else None
            new_index = int(resp.headers.get("X-Consul-Index", "0"))
            return new_index, shape(self._dep, resp.status, body)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        index, last, delay = 0, object(), 0.25
        while True:
            try:
                new_index, data = await self.fetch(index)
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                log.warning("template: watching %s failed (%s); retrying", self._url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.25
            if data != last:
                last = data
                self._changed(self._dep, data)
            if new_index == 0:
                await asyncio.sleep(30.0)
            index = new_index if new_index >= index else 0
