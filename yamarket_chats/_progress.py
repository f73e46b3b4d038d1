"""Progress displays and summaries of a sync: a rich bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TextIO

from .ingest import SyncReport

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["ProgressDisplay", "make_display", "summary"]


def rich_available() -> bool:
    """Whether the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def summary(report: SyncReport) -> str:
    """One line on what a sync did."""
    return (
        f"{report.chats_total} chats ({report.chats_fetched} fetched, "
        f"{report.chats_skipped} unchanged), {report.messages} new messages "
        f"in {report.pages} pages; {report.requests} requests ({report.retries} retries, "
        f"{report.rate_limited} rate-limited), "
        f"{report.waited_seconds:.1f} s waited on limits (all tasks); "
        f"{report.elapsed:.1f} s, {report.messages_per_second:,.0f} messages/s"
    )


class ProgressDisplay:
    """Shows a running sync; `update` is the ``progress`` callback of `sync`."""

    def start(self, title: str) -> None:
        """Begin showing a sync called `title`."""

    def update(self, report: SyncReport) -> None:
        """Show the live report."""

    def stop(self, *, failed: bool = False) -> None:
        """Stop showing; the last state stays visible unless the sync `failed`."""


class _PlainDisplay(ProgressDisplay):
    """A line at most every `interval` seconds, and one at the end."""

    def __init__(self, stream: TextIO, interval: float = 1.0) -> None:
        self._stream = stream
        self._interval = interval
        self._title = ""
        self._last = 0.0
        self._report: SyncReport | None = None

    def start(self, title: str) -> None:
        self._title = title
        self._last = time.monotonic()
        self._report = None

    def update(self, report: SyncReport) -> None:
        self._report = report
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._line(report)

    def stop(self, *, failed: bool = False) -> None:
        if self._report is not None and not failed:
            self._line(self._report)

    def _line(self, r: SyncReport) -> None:
        print(
            f"{self._title}: chats {r.chats_done}/{r.chats_total}, messages {r.messages}, "
            f"requests {r.requests}, waited {r.waited_seconds:.1f} s",
            file=self._stream,
            flush=True,
        )


class _RichDisplay(ProgressDisplay):
    """A rich progress bar, one per sync."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("chats"),
            TextColumn("{task.fields[messages]:>7,} messages"),
            TextColumn("{task.fields[requests]:>5,} requests"),
            TextColumn("{task.fields[waited]:>5.1f} s waited"),
            TimeElapsedColumn(),
            console=Console(file=self._stream),
        )
        self._progress.start()
        self._task = self._progress.add_task(title, total=None, messages=0, requests=0, waited=0.0)

    def update(self, report: SyncReport) -> None:
        if self._progress is None or self._task is None:
            return
        fields: dict[str, Any] = {
            "messages": report.messages,
            "requests": report.requests,
            "waited": report.waited_seconds,
        }
        self._progress.update(
            self._task, completed=report.chats_done, total=report.chats_total or None, **fields
        )

    def stop(self, *, failed: bool = False) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = self._task = None


def make_display(stream: TextIO, *, quiet: bool = False) -> ProgressDisplay:
    """A rich bar when `stream` is a terminal and rich is installed, else plain lines."""
    if quiet:
        return ProgressDisplay()
    if stream.isatty() and rich_available():
        return _RichDisplay(stream)
    return _PlainDisplay(stream)
