"""`AsyncClosing`: ``async with obj`` for objects that end with ``await obj.close()``.

The client, the limiters and the sinks all leave their ``async with`` blocks
the same way, by closing, whatever the exception; this mixin writes that
once. It sits at the bottom of the package (it imports nothing of it) so
that every layer may use it.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["AsyncClosing"]

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
