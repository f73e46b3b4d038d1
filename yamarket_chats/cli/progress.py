"""Progress displays and summaries of a sync: a rich bar on a TTY, plain lines otherwise.

How long a sync waited on rate limits is shown as a share of the run, from a
`WaitClock` (wall-clock time, see `waits`), never the sum over the tasks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TextIO

from ..ingest import SyncReport
from .output import rich_available
from .waits import WaitClock

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["ProgressDisplay", "make_display", "summary"]


def waiting_share(report: SyncReport, waited: float) -> float:
    """The share of the run (0..1) during which some request waited on limits."""
    return min(1.0, waited / report.elapsed) if report.elapsed > 0 else 0.0


def summary(report: SyncReport, waited: float) -> str:
    """One line on what a sync did; `waited` is wall-clock seconds spent waiting on limits."""
    return (
        f"{report.chats_total} chats ({report.chats_fetched} fetched, "
        f"{report.chats_skipped} unchanged), {report.messages} new messages "
        f"in {report.pages} pages; {report.requests} requests ({report.retries} retries, "
        f"{report.rate_limited} rate-limited); {report.elapsed:.1f} s "
        f"({waiting_share(report, waited):.0%} of it waiting on rate limits), "
        f"{report.messages_per_second:,.0f} messages/s"
    )


class ProgressDisplay:
    """Shows a running sync; `update` is the ``progress`` callback of `sync`."""

    def __init__(self, clock: WaitClock | None = None) -> None:
        self._clock = clock or WaitClock()
        self._base = 0.0

    def start(self, title: str) -> None:
        """Begin showing a sync called `title`."""
        self._base = self._clock.seconds

    def waited(self) -> float:
        """Wall-clock seconds spent waiting on limits since `start`."""
        return self._clock.seconds - self._base

    def update(self, report: SyncReport) -> None:
        """Show the live report."""

    def stop(self, *, failed: bool = False) -> None:
        """Stop showing; the last state stays visible unless the sync `failed`."""


class _PlainDisplay(ProgressDisplay):
    """A line at most every `interval` seconds, and one at the end."""

    def __init__(self, stream: TextIO, clock: WaitClock | None, interval: float = 1.0) -> None:
        super().__init__(clock)
        self._stream = stream
        self._interval = interval
        self._title = ""
        self._last = 0.0
        self._report: SyncReport | None = None

    def start(self, title: str) -> None:
        super().start(title)
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
            f"{self._title}: chats {r.chats_done}/{r.chats_total}, {_businesses(r)}"
            f"messages {r.messages}, "
            f"requests {r.requests}, waiting on limits "
            f"{waiting_share(r, self.waited()):.0%} of {r.elapsed:.1f} s",
            file=self._stream,
            flush=True,
        )


def _businesses(report: SyncReport) -> str:
    """``businesses 12/2000, `` while some business is still to do (the chat total
    only counts the businesses listed so far)."""
    total = report.businesses_total
    return f"businesses {report.businesses_done}/{total}, " if total > 1 else ""


class _RichDisplay(ProgressDisplay):
    """A rich progress bar, one per sync."""

    def __init__(self, stream: TextIO, clock: WaitClock | None) -> None:
        super().__init__(clock)
        self._stream = stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, title: str) -> None:
        super().start(title)
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
            TextColumn("{task.fields[businesses]}"),
            TextColumn("{task.fields[messages]:>7,} messages"),
            TextColumn("{task.fields[requests]:>5,} requests"),
            TextColumn("{task.fields[waiting]:>4.0%} waiting on limits"),
            TimeElapsedColumn(),
            console=Console(file=self._stream),
        )
        self._progress.start()
        self._task = self._progress.add_task(
            title, total=None, businesses="", messages=0, requests=0, waiting=0.0
        )

    def update(self, report: SyncReport) -> None:
        if self._progress is None or self._task is None:
            return
        fields: dict[str, Any] = {
            "businesses": _businesses(report).removesuffix(", "),
            "messages": report.messages,
            "requests": report.requests,
            "waiting": waiting_share(report, self.waited()),
        }
        self._progress.update(
            self._task, completed=report.chats_done, total=report.chats_total or None, **fields
        )

    def stop(self, *, failed: bool = False) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = self._task = None


def make_display(
    stream: TextIO, *, quiet: bool = False, clock: WaitClock | None = None
) -> ProgressDisplay:
    """A rich bar when `stream` is a terminal and rich is installed, else plain lines.

    `clock` measures the waits on limits (the client's hook, see `WaitClock`);
    without one the display reports no waiting.
    """
    if quiet:
        return ProgressDisplay(clock)
    if stream.isatty() and rich_available():
        return _RichDisplay(stream, clock)
    return _PlainDisplay(stream, clock)
