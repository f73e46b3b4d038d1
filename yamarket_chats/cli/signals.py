"""SIGINT and SIGTERM: a clean exit (130 / 143) at every moment of a command.

Three regimes hand over to each other: outside the event loop a Python
handler raises `Interrupted`; while a command runs, the loop's handlers cancel
it so that its cleanup (commits, closing the sink) runs first; once the
process is exiting, signals are ignored so that its exit code stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Iterator

__all__ = ["Interrupted", "ignore_signals", "install_signal_handlers", "interruptible"]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived outside the command's own cancellation window.

    A KeyboardInterrupt, because asyncio lets only that (and SystemExit) out of
    a callback or a task step; any other exception raised there by a signal
    handler would be logged and swallowed, and the command would run on.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupted(signum: int, frame: object) -> None:
    _exit_on_next_signal()
    raise Interrupted(signum)


def _exit_on_next_signal() -> None:
    # Only the first signal unwinds the command: a second one, arriving while the
    # first is handled (in asyncio.run's teardown, say), would escape the handling
    # as a traceback. It ends the process at once instead (the user insists;
    # nothing is left to save).
    for sig in _SIGNALS:
        signal.signal(sig, _exit_now)


def _exit_now(signum: int, frame: object) -> None:
    os.write(2, b"yamarket-chats: interrupted\n")
    os._exit(128 + signum)


def install_signal_handlers() -> None:
    """Turn SIGINT and SIGTERM into a clean exit (130 / 143) instead of the defaults."""
    for sig in _SIGNALS:
        with contextlib.suppress(ValueError):  # not the main thread: leave them be
            signal.signal(sig, _raise_interrupted)


def ignore_signals() -> None:
    """From here on the process is exiting with its code: signals change nothing.

    Python's shutdown puts the default handlers back in place of any Python
    handler (not of SIG_IGN), and a signal then would kill the process after
    it has printed its result, with -SIGNAL instead of its exit code.
    """
    for sig in _SIGNALS:
        with contextlib.suppress(ValueError):
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered on exit) while their handlers change hands."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def interruptible(coro: Awaitable[int]) -> int:
    """Run `coro`, cancelling it on SIGINT/SIGTERM so cleanup (commits) runs first."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def cancel(sig: int) -> None:
        received.append(sig)
        task.cancel()

    handled = []
    for sig in _SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, cancel, sig)
            handled.append(sig)
    interrupted = False
    try:
        return await coro
    except asyncio.CancelledError:
        if received:
            interrupted = True
            raise Interrupted(received[0]) from None
        raise
    finally:
        # Removing puts the default handlers back: ours replace them before
        # a signal can reach them. Once a signal has interrupted the command,
        # the next one is a second signal, whatever handled the first.
        with signals_held():
            for sig in handled:
                loop.remove_signal_handler(sig)
            if handled:
                (_exit_on_next_signal if interrupted else install_signal_handlers)()
