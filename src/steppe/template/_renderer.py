"""Renders Jinja2 templates (sandboxed) from catalog data and keeps them current.

Like consul-template: a template is rendered, its reads become watched dependencies, and
every change re-renders it after the ``wait`` quiet period (``min``, but never longer than
``max`` during a burst). Output is written atomically (temp file + rename) and the command
or callback runs only when the bytes actually changed. A template whose ``key()`` is still
missing is not written at all, so a consumer never sees a half-filled file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from steppe.errors import Problem, ValidationError
from steppe.template._deps import Dep, Watcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TemplateSpec:
    destination: str
    source: str = ""
    """A file to read the template from; or give ``contents``."""
    contents: str = ""
    command: str = ""
    perms: int = 0o644

    @staticmethod
    def parse(text: str) -> TemplateSpec:
        """``in.tmpl:out.cfg[:command]``, the CLI's ``-template`` syntax."""
        parts = text.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValidationError(
                Problem("-template", f'{text!r}: use "in.tmpl:out.cfg[:command]"')
            )
        return TemplateSpec(
            destination=parts[1], source=parts[0], command=parts[2] if len(parts) > 2 else ""
        )


OnChange = Callable[[TemplateSpec], Awaitable[None]]


class _Incomplete(Exception):
    pass


class Renderer:
    def __init__(
        self,
        base_url: str,
        templates: list[TemplateSpec],
        *,
        wait: tuple[float, float] = (0.0, 0.0),
        on_change: OnChange | None = None,
        client: aiohttp.ClientSession | None = None,
    ) -> None:
        """``on_change`` runs after a template's output changed (default: its command)."""
        self._base_url = base_url
        self._templates = templates
        self._wait = wait
        self._on_change = on_change or run_command
        self._client = client
        self._own_client = client is None
        self._data: dict[Dep, Any] = {}
        self._watchers: dict[Dep, Watcher] = {}
        self._changed = asyncio.Event()
        self._env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
        )
        self._compiled = [self._compile(t) for t in templates]
        self.renders = 0

    def _compile(self, spec: TemplateSpec) -> jinja2.Template:
        try:
            text = spec.contents or Path(spec.source).read_text()
            return self._env.from_string(text)
        except OSError as exc:
            raise ValidationError(Problem(spec.source, f"cannot read template: {exc}")) from exc
        except jinja2.TemplateSyntaxError as exc:
            where = f"{spec.source or 'template'}:{exc.lineno}"
            raise ValidationError(Problem(where, exc.message or "syntax error")) from exc

    # template functions ----------------------------------------------------------------
    def _get(self, dep: Dep, missing: list[Dep]) -> Any:
        if dep not in self._data:
            missing.append(dep)
            return None
        return self._data[dep]

    def _functions(self, missing: list[Dep]) -> dict[str, Any]:
        def service(spec: str, tag: str = "") -> list[dict[str, Any]]:
            name, _, dc = spec.partition("@")
            if "." in name and not tag:
                tag, _, name = name.partition(".")
            return self._get(Dep("service", name, tag, dc), missing) or []

        def key(path: str) -> str:
            value = self._get(Dep("key", path), missing)
            if value is None:
                raise _Incomplete(path)
            return str(value)

        def key_or_default(path: str, default: str = "") -> str:
            value = self._get(Dep("key", path), missing)
            return default if value is None else str(value)

        def tree(prefix: str) -> list[dict[str, Any]]:
            entries = self._get(Dep("tree", prefix), missing) or []
            base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
            return [
                {**e, "Key": e["Key"][len(base) :]}
                for e in entries
                if e["Key"].startswith(base) and e["Key"] != base
            ]

        def ls(prefix: str) -> list[dict[str, Any]]:
            return [e for e in tree(prefix) if "/" not in e["Key"]]

        return {
            "service": service,
            "services": lambda: self._get(Dep("services"), missing) or [],
            "key": key,
            "key_or_default": key_or_default,
            "ls": ls,
            "tree": tree,
            "datacenters": lambda: self._get(Dep("datacenters"), missing) or [],
        }

    # rendering -------------------------------------------------------------------------
    def render_text(self, index: int) -> tuple[str | None, list[Dep]]:
        """The output (None while a ``key()`` is missing) and the dependencies not yet known."""
        missing: list[Dep] = []
        try:
            text = self._compiled[index].render(**self._functions(missing))
        except _Incomplete:
            return None, missing
        except jinja2.TemplateError as exc:
            spec = self._templates[index]
            raise ValidationError(Problem(spec.source or spec.destination, str(exc))) from exc
        return text, missing

    async def _ensure_client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._client

    async def render_once(self) -> list[TemplateSpec]:
        """Renders every template, fetching what they read; returns those whose file changed."""
        client = await self._ensure_client()
        changed = []
        for i, spec in enumerate(self._templates):
            for _ in range(20):
                text, missing = self.render_text(i)
                if not missing:
                    break
                for dep in missing:
                    watcher = self._watchers.get(dep) or Watcher(
                        client, self._base_url, dep, self._update
                    )
                    self._watchers[dep] = watcher
                    _, self._data[dep] = await watcher.fetch()
            self.renders += 1
            if text is not None and write_atomically(spec, text):
                changed.append(spec)
        return changed

    def _update(self, dep: Dep, data: Any) -> None:
        if self._data.get(dep, object()) != data:
            self._data[dep] = data
            self._changed.set()

    async def run(self) -> None:
        """Renders, then re-renders on every change until cancelled."""
        try:
            for spec in await self.render_once():
                await self._on_change(spec)
            for watcher in self._watchers.values():
                watcher.start()
            while True:
                await self._changed.wait()
                await self._quiesce()
                self._changed.clear()
                started = set(self._watchers)
                for spec in await self.render_once():
                    await self._on_change(spec)
                for dep in set(self._watchers) - started:
                    self._watchers[dep].start()
        finally:
            await self.close()

    async def _quiesce(self) -> None:
        low, high = self._wait
        if low <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(high, low)
        while True:
            self._changed.clear()
            remaining = min(low, deadline - loop.time())
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    async def close(self) -> None:
        for watcher in self._watchers.values():
            await watcher.stop()
        if self._own_client and self._client is not None:
            await self._client.close()
            self._client = None


def write_atomically(spec: TemplateSpec, text: str) -> bool:
    """Writes ``text`` unless the file already holds it; True when it changed."""
    path = Path(spec.destination)
    data = text.encode()
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, spec.perms)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


async def run_command(spec: TemplateSpec) -> None:
    if not spec.command:
        return
    proc = await asyncio.create_subprocess_shell(spec.command)
    code = await proc.wait()
    if code:
        log.warning("template command %r exited with %d", spec.command, code)
