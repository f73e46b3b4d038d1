"""The sink a sync writes into, opened off the event loop.

A file sink opens its file in its constructor, so that a bad path fails
before any request. For SQLite that is a ``connect`` that waits up to the
sink's busy timeout (30 s) when another program holds the database; on the
loop, that wait would keep Ctrl-C and SIGTERM from being handled until it
ends. So file sinks are built in a daemon thread whose result the loop
awaits: an interrupt cancels the wait and the process exits at once (130 or
143), leaving the thread behind. Not ``asyncio.to_thread``: it runs in the
default executor, which ``asyncio.run`` waits for before returning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from ..ingest import Sink
from ..sinks.jsonl import JsonlSink
from ..sinks.sqlite import SQLiteSink
from .failures import SinkUnusable, UsageError
from .logs import say
from .output import log_text
from .parser import DEFAULT_DB

__all__ = ["OpenableSink", "open_file_sink", "open_sink"]

#: Seconds a file sink may take to open before the command says it is waiting.
SLOW_OPEN_SECONDS = 1.0


class OpenableSink(Sink, Protocol):
    """A sink `sync` opens and closes itself (``async with``)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


class _Closable(Protocol):
    async def close(self) -> None: ...


_T = TypeVar("_T", bound=_Closable)


def check_sync_options(args: argparse.Namespace) -> None:
    """Refuse options that parse but do not go together (exit 2), before anything opens."""
    if args.worker and not args.postgres_url:
        raise UsageError("--worker needs --postgres-url: the workers' leases live in PostgreSQL")
    if args.interval is not None and (not args.follow or args.interval < 0):
        raise UsageError("--interval takes seconds >= 0 and goes with --follow")
    if args.postgres_url and importlib.util.find_spec("asyncpg") is None:
        raise UsageError("--postgres-url needs asyncpg: pip install 'yamarket-chats[postgres]'")


async def open_sink(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> OpenableSink:
    """The sync's sink from --db / --jsonl / --postgres-url, opened on `stack`.

    A file that cannot be used is named (`SinkUnusable`); a URL is not (it may
    hold a password).
    """
    check_sync_options(args)
    sink: OpenableSink
    if args.postgres_url:
        from ..sinks.postgres import PostgresSink  # (and the fleet's leases it builds on)

        sink = PostgresSink(args.postgres_url, lock_timeout=args.lock_timeout)
        await stack.enter_async_context(sink)
        return sink
    path = args.jsonl or args.db or Path(DEFAULT_DB)
    kind = JsonlSink if args.jsonl else SQLiteSink
    try:
        sink = await open_file_sink(
            lambda: kind(path, lock_timeout=args.lock_timeout), path, quiet=args.quiet
        )
    except (OSError, sqlite3.Error) as exc:
        detail = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            named = exc.filename is not None and os.fspath(exc.filename) != os.fspath(path)
            detail = f"{exc.filename}: {exc.strerror}" if named else exc.strerror
        raise SinkUnusable(f"cannot use {path} as the sink: {detail}") from None
    await stack.enter_async_context(sink)
    return sink


async def open_file_sink(build: Callable[[], _T], path: Path, *, quiet: bool) -> _T:
    """`build()` off the loop; unless `quiet`, say so on stderr if it takes long."""
    notice = None
    if not quiet:
        line = f"waiting for {log_text(os.fspath(path))}: another program may be using it"
        notice = asyncio.get_running_loop().call_later(SLOW_OPEN_SECONDS, _say, line)
    try:
        return await _built_off_loop(build)
    finally:
        if notice is not None:
            notice.cancel()


async def _built_off_loop(build: Callable[[], _T]) -> _T:
    """``build()`` in a daemon thread, awaited; cancelling the wait abandons the thread.

    What an abandoned thread builds after all, it closes itself: nobody else
    will (a file sink holds its lock until closed).
    """
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    guard = threading.Lock()
    outcome: list[tuple[_T | None, BaseException | None]] = []
    abandoned = False

    def work() -> None:
        try:
            result: tuple[_T | None, BaseException | None] = (build(), None)
        except BaseException as exc:
            result = (None, exc)
        with guard:
            keep = not abandoned
            if keep:
                outcome.append(result)
        if not keep:
            if result[0] is not None:
                with contextlib.suppress(Exception):
                    asyncio.run(result[0].close())
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(_wake, woken)

    threading.Thread(target=work, name="yamarket-chats-open-sink", daemon=True).start()
    try:
        await woken
    except asyncio.CancelledError:
        with guard:
            abandoned = True
        if outcome and outcome[0][0] is not None:  # built, not yet handed over
            await outcome[0][0].close()
        raise
    built, error = outcome[0]
    if error is not None:
        raise error
    assert built is not None
    return built


def _say(line: str) -> None:
    say(f"yamarket-chats: {line} (Ctrl-C stops)", level=logging.WARNING)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
