"""Stopping background tasks, which every long-lived component of an agent does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancels ``tasks`` and waits until each has ended. What they raised while ending is
    dropped: a component that is stopping has no one left to report it to."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
