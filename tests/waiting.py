"""Waiting in a test for a condition, never for a time: one poll for the whole suite."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL = 0.01  #: seconds between two looks: leaves the cores to what is awaited


async def until(
    condition: Callable[[], object | Awaitable[object]],
    what: str = "the condition never held",
    timeout: float = 30.0,
) -> None:
    """Return once ``condition()`` (plain or async) is true; fail with ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, what
        await asyncio.sleep(POLL)
