"""The loop both `run_worker` and `follow` are built on: up to N syncs at once until stopped.

Each loop starts syncs, then waits for one of them to end, for its ``stop``
event, or for its next poll; a sync's fatal error ends the loop, and leaving
it cancels the syncs still running and waits for them (their pages in flight
are committed first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

from ..errors import InvalidRequestError

#: Seconds between the end of a cabinet's sync and the next one, in follow mode.
DEFAULT_INTERVAL = 60.0

K = TypeVar("K")


def check_options(interval: float, max_businesses: int | None) -> None:
    """Refuse an ``interval`` or ``max_businesses`` no loop can run with, before any request.

    `InvalidRequestError` is a `ValueError`, as these errors were before it.
    """
    if interval < 0:
        raise InvalidRequestError(f"interval must be >= 0, got {interval}")
    if max_businesses is None:
        return  # no cap
    if isinstance(max_businesses, bool) or not isinstance(max_businesses, int):
        raise InvalidRequestError(
            f"max_businesses must be an int >= 1 or None (no cap), got {max_businesses!r}"
        )
    if max_businesses < 1:
        raise InvalidRequestError(
            f"max_businesses must be >= 1 or None (no cap), got {max_businesses}"
        )


def has_room(running: int, max_businesses: int | None) -> bool:
    """Whether a loop running ``running`` syncs may start one more (``None``: no cap)."""
    return max_businesses is None or running < max_businesses


class RunningSyncs(Generic[K]):
    """The syncs a loop runs, each under a key (its business or lease), and its stop event.

    Use as ``async with RunningSyncs(stop) as running``.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.tasks: dict[asyncio.Future[None], K] = {}
        self._stopping = asyncio.ensure_future(stop.wait())  # made inside the running loop

    async def __aenter__(self) -> RunningSyncs[K]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.cancel()
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self.tasks)

    def start(self, key: K, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` as one more sync."""
        self.tasks[asyncio.ensure_future(job)] = key

    async def wait(self, timeout: float) -> None:
        """Until a sync ends, ``stop`` is set, or ``timeout`` passes; a sync's error is raised."""
        waits: list[asyncio.Future[Any]] = [*self.tasks]
        if not self._stopping.done():
            waits.append(self._stopping)
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in self.tasks:
                del self.tasks[task]
                task.result()
