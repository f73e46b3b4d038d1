"""Ending well: `AsyncClosing` (``async with`` from ``close()``) and `wait_out`.

The client, the limiters and the sinks all leave their ``async with`` blocks
the same way, by closing, whatever the exception; the mixin writes that
once. A write or a release that must finish even when its caller is
cancelled (a sink's page, a lease) is waited out through the cancellations
by `wait_out`. The module sits at the bottom of the package (it imports
nothing of it) so that every layer may use it.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

__all__ = ["AsyncClosing", "wait_out"]

_C = TypeVar("_C", bound="AsyncClosing")


class AsyncClosing:
    """``async with`` support from ``close()``: enter returns the object, exit closes it.

    Subclasses write ``close()``; one that must do work on entering (open a
    pool, check a server) overrides ``__aenter__`` and returns ``self``.
    """

    async def close(self) -> None:
        """Release what the object holds; subclasses write it."""
        raise NotImplementedError

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def wait_out(future: asyncio.Future[Any], grace: float | None = None) -> bool:
    """Wait until ``future`` is done, through cancellations; ``True`` if one came meanwhile.

    With ``grace``, a cancelled caller waits at most that many seconds more
    (a statement stuck on a database that does not answer must not hold a
    shutdown for ever), then cancels ``future`` and returns at once.
    """
    cancelled = False
    deadline: float | None = None
    loop = asyncio.get_running_loop()
    while not future.done():
        if deadline is not None and loop.time() >= deadline:
            future.cancel()
            break
        try:
            timeout = None if deadline is None else deadline - loop.time()
            await asyncio.wait([future], timeout=timeout)
        except asyncio.CancelledError:
            cancelled = True
            if grace is not None and deadline is None:
                deadline = loop.time() + grace
    return cancelled
