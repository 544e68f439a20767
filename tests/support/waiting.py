"""Waiting on conditions with a deadline: the only way tests wait for anything."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Polls ``condition`` until it returns something truthy; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the condition may not be checkable yet
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last_error
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], Awaitable[T | None] | T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Like :func:`wait_until` inside the event loop; ``condition`` may be a plain
    function (reading in-process state) or return an awaitable (asking a server)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            answer = condition()
            result = await answer if inspect.isawaitable(answer) else answer
            if result:
                return result
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last_error
        await asyncio.sleep(interval)
