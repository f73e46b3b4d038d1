"""The loop thread of a blocking client: runs coroutines for callers on other threads.

One `Runner` per facade (its views share it): an event loop on a daemon
thread, submitting a caller's coroutine and waiting for it (`_Call`, so that
an interrupted wait cancels the call wherever the interruption lands),
closing (the async client, then a limiter it was given), and refusing calls
once closed, after a fork, or from its own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, Final, Generic, TypeVar

from ..client import ChatsClient as AsyncChatsClient
from ..errors import YandexMarketError
from ..limits._engine import Engine

__all__ = ["CLOSED", "FINALIZER_TIMEOUT", "OWN_THREAD", "Runner", "aclose", "build", "next_page"]

T = TypeVar("T")
P = TypeVar("P")

#: Seconds the finalizer of a facade never closed (garbage-collected, or
#: still open at interpreter exit) waits for the async client to close and
#: for the thread to end.
FINALIZER_TIMEOUT: Final = 10.0

CLOSED: Final = "this blocking ChatsClient is closed"
_FORKED: Final = (
    "this blocking ChatsClient was created in another process, before a fork: its "
    "event-loop thread did not come along; create the client in this process (Celery "
    "prefork: in a worker_process_init handler, or on first use in the task)"
)
OWN_THREAD: Final = (
    "a blocking ChatsClient was called from its own event-loop thread (from a hook?): it "
    "would wait on itself. Code running on that loop must not call the blocking client"
)

_names = itertools.count(1)


class Runner:
    """One event loop on a daemon thread: runs coroutines for callers on other threads.

    Shared by a facade and its views; it never refers to them, so a facade
    that nobody holds is garbage-collected and its finalizer closes this.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: AsyncChatsClient | None = None  # the root async client, once made
        self.limiter: Engine[Any] | None = None  # a limiter given: started and closed here
        # Why calls are refused (closed, forked), or None. Set under _lock, so
        # nothing is submitted once closing began.
        self.refusal: str | None = None
        self._lock = threading.RLock()  # re-entrant: a finalizer may run inside `run`
        self._close_lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(
            target=_serve,
            args=(self.loop,),
            name=f"yamarket_chats.blocking-{next(_names)}",
            daemon=True,  # a facade never closed must not hold up the interpreter's exit
        )
        try:
            self._thread.start()
        except BaseException:  # no thread to be had: no loop left open either
            self.loop.close()
            raise
        self.ident = self._thread.ident
        _RUNNERS.add(self)

    def check(self) -> None:
        """Raise if a call cannot be made now (closed, forked, or on the loop's own thread)."""
        refusal = self.refusal
        if refusal is None and threading.get_ident() == self.ident:
            refusal = OWN_THREAD
        if refusal is not None:
            raise YandexMarketError(refusal)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (its exception, as raised there).

        If the wait is interrupted (KeyboardInterrupt, a signal handler's
        exception such as Celery's soft time limit), the coroutine is
        cancelled and its end waited for before the exception goes on,
        wherever the interruption lands: `_Call` is made before anything is
        scheduled, and its `abandon` runs on the loop after its `start`.
        """
        call: _Call[T] | None = None
        try:
            with self._lock:
                try:
                    self.check()
                except BaseException:
                    coro.close()  # never started: no "never awaited" warning
                    raise
                call = _Call(coro, self.loop)
                self._schedule(call.start)
            return call.future.result()
        except concurrent.futures.CancelledError:
            if self.refusal is None:
                raise  # the coroutine cancelled itself
            # Not by this caller (it cancels only below): the loop shut down under it.
            raise YandexMarketError(f"{CLOSED} (closed while the call ran)") from None
        except BaseException:
            if call is None:
                coro.close()  # interrupted before anything was scheduled
            elif not call.future.done():
                with contextlib.suppress(YandexMarketError):  # the loop is gone: nothing runs
                    self._schedule(call.abandon)
                    while not call.future.done() and self._thread.is_alive():
                        concurrent.futures.wait([call.future], 0.5)
            raise

    def _schedule(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop soon (in the order scheduled)."""
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: its thread ended without close()
            raise YandexMarketError(f"{CLOSED} (its event-loop thread has ended)") from None

    def discard(self, agen: AsyncGenerator[Any, None]) -> None:
        """Close a walk's async generator on the loop: at once, or soon from the loop's thread."""
        if self.refusal is not None:
            return  # the loop's shutdown closed it (or, forked, it is not ours to close)
        if threading.get_ident() == self.ident:  # garbage-collected on the loop thread
            asyncio.run_coroutine_threadsafe(aclose(agen), self.loop)
            return
        try:
            self.run(aclose(agen))
        except YandexMarketError:
            if self.refusal is None:
                raise  # the generator's own error, not a close that came meanwhile

    def close(self, timeout: float | None = None) -> None:
        """Close the async client, stop the loop and join the thread. Idempotent.

        `timeout` bounds each of the two waits (``None``: no bound).
        """
        with self._lock:
            if self.refusal is None:
                self.refusal = CLOSED
        if threading.get_ident() == self.ident:
            self._close_soon()
            return
        with self._close_lock:
            if self._stopped:
                return
            try:
                if self._thread.is_alive():
                    closing = asyncio.run_coroutine_threadsafe(
                        _shut(self.client, self.limiter), self.loop
                    )
                    closing.result(timeout)
            except concurrent.futures.TimeoutError:
                pass  # the loop's shutdown, below, cancels what is left
            finally:
                if self._thread.is_alive():
                    self.loop.call_soon_threadsafe(self.loop.stop)
                    self._thread.join(timeout)
                self._stopped = True

    def _close_soon(self) -> None:
        """Close from the loop's own thread (a finalizer run there): schedule it, no waiting."""
        if not self._stopped and not self.loop.is_closed():
            self._stopped = True
            asyncio.run_coroutine_threadsafe(_close_and_stop(self, self.loop), self.loop)

    def forked(self) -> None:
        """In a child process after fork(): the thread is gone; refuse calls, close nothing."""
        self._lock = threading.RLock()
        self._close_lock = threading.Lock()
        self.refusal = _FORKED
        self._stopped = True


#: Every live runner, for the fork handler.
_RUNNERS: weakref.WeakSet[Runner] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for runner in list(_RUNNERS):
        runner.forked()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The thread: run the loop until stopped, then end what is left as ``asyncio.run`` does."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


class _Call(Generic[T]):
    """One coroutine run on the loop for a caller on another thread.

    `start` and `abandon` run on the loop, in the order the caller scheduled
    them: an abandoned call that has not started never starts (its coroutine
    is closed), one that has is cancelled. `future` ends either way.
    """

    def __init__(self, coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> None:
        self.coro = coro
        self.loop = loop
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.task: asyncio.Task[T] | None = None
        self.abandoned = False

    def start(self) -> None:
        if self.abandoned:
            return
        self.task = self.loop.create_task(self.coro)
        self.task.add_done_callback(self._done)

    def abandon(self) -> None:
        if self.task is not None:
            self.task.cancel()
        elif not self.abandoned:
            self.abandoned = True
            self.coro.close()
            self.future.cancel()

    def _done(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self.future.cancel()
        elif task.exception() is not None:
            self.future.set_exception(task.exception())
        else:
            self.future.set_result(task.result())


async def build(options: dict[str, Any], limiter: Engine[Any] | None) -> AsyncChatsClient:
    """The async client, made on the loop that will run it; a limiter given is started
    there (blocking code cannot run its ``async with``), as `_shut` closes it."""
    client = AsyncChatsClient(**options)
    if limiter is not None:
        await limiter.start()
    return client


async def _shut(client: AsyncChatsClient | None, limiter: Engine[Any] | None) -> None:
    """Close the async client, then the limiter given (its queued finishes are sent)."""
    try:
        if client is not None:
            await client.close()
    finally:
        if limiter is not None:
            await limiter.close()


async def next_page(pages: AsyncGenerator[P, None]) -> P | None:
    """The next page of a walk, or ``None`` at its end (pages are never ``None``)."""
    try:
        return await pages.__anext__()
    except StopAsyncIteration:
        return None


async def aclose(agen: AsyncGenerator[Any, None]) -> None:
    await agen.aclose()


async def _close_and_stop(runner: Runner, loop: asyncio.AbstractEventLoop) -> None:
    try:
        await _shut(runner.client, runner.limiter)
    finally:
        loop.stop()
