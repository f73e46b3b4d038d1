"""An event loop on a virtual clock, for the limit tests and the fake's quota windows.

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

from yamarket_chats import ChatsClient
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

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


class ManualClock:
    """A clock that moves only when told: ``clock()`` is `now`.

    Assigned to ``FakeServer.clock``, it pins the fake's quota windows, so a
    test decides when a window ends instead of racing the wall clock.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move `now` forward by `seconds`."""
        self.now += seconds


def with_fake_on_virtual_time(
    config: FakeMarketConfig,
    body: Callable[[FakeServer, ChatsClient, VirtualClock], Awaitable[None]],
    **client_options: Any,
) -> None:
    """Run ``body(fake, client, loop)`` on a fresh virtual-clock loop.

    The fake's quota windows and the client's limits both read the loop's
    clock, so waits for a bucket or for a window's ``-Until`` take no real
    time, while requests still cross loopback for real.
    """

    async def main(loop: VirtualClock) -> None:
        async with run_fake_server(config) as fake:
            fake.clock = loop.time
            options = {"api_key": fake.api_key, "base_url": fake.url, "backoff": 0.01}
            async with ChatsClient(**{**options, **client_options}) as client:
                await body(fake, client, loop)

    run_virtual(main)
