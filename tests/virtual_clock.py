"""An event loop on a virtual clock, for the limit tests.

``loop.time()`` (the clock of the limits engine, of the in-process store and
of aiolimiter) reads `VirtualClock.now`. When the loop has nothing to do but
wait for a timer, the clock jumps to it instead of sleeping, so an hour of
waiting takes no time. Tests may also move the clock by hand between steps.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc, valid-type]
    clock: VirtualClock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer: only I/O can wake the loop
            return super().select(None)  # type: ignore[no-any-return]
        self.clock.now += timeout
        return []


class VirtualClock(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is `now`."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        selector = _JumpingSelector()
        selector.clock = self
        self.now = start
        super().__init__(selector)

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[VirtualClock], Awaitable[T]], start: float = 1_000_000.0) -> T:
    """Run ``main(loop)`` to completion on a fresh virtual-clock loop."""
    loop = VirtualClock(start)
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()
