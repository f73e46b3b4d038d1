"""The async facade both file sinks share: blocking work in order on one thread.

The event loop never waits on the disk, and writes are serialized in the order
they are handed over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class _ThreadSink:
    """An async facade over blocking work done in order on one thread."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _close_sync(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Finish the writes already handed over (even by cancelled tasks), then close."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_sync)
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


_S = TypeVar("_S", bound=_ThreadSink)
