"""Where the task runner meets the template renderer (``steppe.template``).

The client owns the lifecycle (render before the first start, stop with the task) and
the reaction to a change (``change_mode`` restart / signal / noop); the renderer owns
what a template means. A factory builds one hook per task so the client never imports
the renderer and tests can hand in a fake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from steppe.structs import Allocation, Task, Template


@dataclass(frozen=True, slots=True)
class TemplateContext:
    alloc: Allocation
    task: Task
    task_dir: Path
    """Relative ``dest_path``s resolve against this directory (``local/x`` lands in it)."""
    env: Mapping[str, str]
    on_change: Callable[[Template], Awaitable[None]]
    """Called after a re-render changed ``template``'s output; applies its change_mode."""


class TemplateHook(Protocol):
    async def render(self) -> None:
        """Renders every template of the task once; returns when all are written.
        Raises SteppeError with a readable reason when one cannot be rendered."""

    async def close(self) -> None:
        """Stops watching for changes."""


TemplateHookFactory = Callable[[TemplateContext], TemplateHook]
