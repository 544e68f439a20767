"""A task's ``template`` stanzas, rendered by ``steppe.template`` from the catalog:
before the task first starts, and again whenever what they read changes, after which
the client applies the template's ``change_mode``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from steppe.client import TemplateContext, TemplateHook
from steppe.errors import SteppeError, ValidationError
from steppe.structs import Template
from steppe.template import Renderer, TemplateSpec


class TaskTemplates:
    def __init__(self, base_url: str, ctx: TemplateContext) -> None:
        self.ctx = ctx
        self._by_destination: dict[str, Template] = {}
        specs = []
        for template in ctx.task.templates:
            destination = str(ctx.task_dir / template.dest_path)
            source = str(ctx.task_dir / template.source_path) if template.source_path else ""
            try:
                perms = int(template.perms or "0644", 8)
            except ValueError as exc:
                raise ValidationError(
                    f"template {template.dest_path}: perms {template.perms!r}"
                ) from exc
            specs.append(
                TemplateSpec(
                    destination=destination,
                    source=source,
                    contents=template.embedded_tmpl,
                    perms=perms,
                )
            )
            self._by_destination[destination] = template
        self.renderer = Renderer(base_url, specs, on_change=self._changed)
        self._watching: asyncio.Task[None] | None = None

    async def _changed(self, spec: TemplateSpec) -> None:
        if self._watching is not None:  # the first render is not a change
            await self.ctx.on_change(self._by_destination[spec.destination])

    async def render(self) -> None:
        try:
            await self.renderer.render_once()
        except (OSError, ValueError) as exc:
            raise SteppeError(f"rendering templates: {exc}") from exc
        self._watching = asyncio.ensure_future(self.renderer.run())

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watching
        await self.renderer.close()


def template_hooks(base_url: str) -> Callable[[TemplateContext], TemplateHook]:
    return lambda ctx: TaskTemplates(base_url, ctx)
