"""The async facade the file sinks share: one private thread, and the sink's lock.

Blocking work handed to the thread runs in the order it was handed over, so
writes are serialized. The sink's exclusive lock (see `_lock`) is taken when
the sink is built: at once if it is free; else, with a ``lock_timeout``, by
the thread, so the event loop never blocks on it and every later call queues
behind the wait and fails with its `SinkLockedError` if it times out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .._closing import AsyncClosing
from ..errors import InvalidRequestError
from ._lock import locked_error, note_wait, try_lock, wait_lock

T = TypeVar("T")


def check_lock_timeout(lock_timeout: float) -> float:
    """``lock_timeout`` as a float, or `InvalidRequestError` naming it."""
    if (
        isinstance(lock_timeout, bool)
        or not isinstance(lock_timeout, (int, float))
        or math.isnan(lock_timeout)
        or lock_timeout < 0
    ):
        raise InvalidRequestError(
            f"lock_timeout must be a number of seconds >= 0 (math.inf: wait for ever),"
            f" got {lock_timeout!r}"
        )
    return float(lock_timeout)


def check_regular_file(path: str | os.PathLike[str]) -> None:
    """`InvalidRequestError` naming ``path`` unless it is a regular file or does not exist."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return  # created by the sink
    except OSError as exc:
        raise InvalidRequestError(f"{os.fspath(path)}: cannot use it as a sink: {exc}") from exc
    if not stat.S_ISREG(mode):
        what = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise InvalidRequestError(
            f"{os.fspath(path)} is {what}: a sink writes to a regular file (pass a file path)"
        )


class _ThreadSink(AsyncClosing):
    """An async facade over blocking work done in order on one thread.

    Subclasses open their files, then call ``super().__init__`` with the
    descriptor to lock (``None``: nothing to lock) and close them again if it
    raises; `_setup` runs once the lock is held, `_close_sync` at close.
    """

    path: str | os.PathLike[str]

    def __init__(
        self,
        name: str,
        path: str | os.PathLike[str],
        lock_fd: int | None,
        lock_timeout: float,
    ) -> None:
        timeout = check_lock_timeout(lock_timeout)
        self.path = path
        self._closed = False
        self._ready = False  # the lock is held and `_setup` ran
        self._broken: BaseException | None = None  # why the lock or setup failed
        self._stop = threading.Event()
        self._pending: set[concurrent.futures.Future[Any]] = set()  # handed to the thread
        self._closing: concurrent.futures.Future[None] | None = None  # by close()
        if lock_fd is None or try_lock(lock_fd):
            self._setup()
            self._ready = True
        elif timeout == 0:
            raise locked_error(path, lock_fd, 0)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        if not self._ready:
            assert lock_fd is not None
            self._executor.submit(self._acquire, lock_fd, timeout)

    def _setup(self) -> None:
        """Blocking work to do once the lock is held (schema, scan)."""

    def _acquire(self, fd: int, timeout: float) -> None:
        try:
            note_wait(self.path, fd, timeout)
            if not wait_lock(fd, timeout, self._stop):
                raise locked_error(self.path, fd, timeout)
            self._setup()
        except BaseException as exc:  # every later call raises it
            self._broken = exc
        else:
            self._ready = True

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._broken is not None:
            raise self._broken
        return fn(*args)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread, after the work handed over before."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return await asyncio.wrap_future(self._submit(fn, *args))

    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Hand ``fn(*args)`` to the thread; the sink is not `_idle` until it is done."""
        future = self._executor.submit(self._call, fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)  # also when cancelled
        return future

    def _idle(self) -> bool:
        """True when the loop may use the sink's state itself: locked, no work queued."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return self._ready and not self._pending

    def _close_sync(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Finish the writes already handed over (even by cancelled tasks), then close.

        Closing releases the sink's lock; a wait for it still running stops.
        """
        if self._closing is None:
            self._closed = True
            self._stop.set()
            # Queued behind the work handed over; the thread ends after it.
            self._closing = self._executor.submit(self._close_sync)
            self._executor.shutdown(wait=False)  # the loop never blocks on it
        # Shielded: a cancelled close() leaves the closing running on the
        # thread (the lock is released when it is done), and a later close()
        # waits for it again.
        await asyncio.shield(asyncio.wrap_future(self._closing))
