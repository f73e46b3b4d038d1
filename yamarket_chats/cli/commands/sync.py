"""``sync``: chats and new messages into a sink, once, or for ever with --follow / --worker.

The client gets its own limiter (or Redis with --redis-url) and, for a
one-off sync, a `WaitClock` as its hook, which the progress display and the
summary read for the share of the run spent waiting on limits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO, cast

from ...client import ChatsClient
from ...ingest import Sink, SyncReport, sync
from ...limits import Limiter
from ..connect import make_client
from ..failures import EXIT_ERROR, EXIT_OK, UsageError
from ..output import log_text, one_line
from ..progress import ProgressDisplay, make_display, summary
from ..sink import open_sink
from ..waits import WaitClock
from .common import filters

if TYPE_CHECKING:
    from ...sinks import PostgresSink

__all__ = ["make_limiter", "run_sync", "sync_command"]


def make_limiter(url: str | None) -> Limiter | None:
    """Quotas in Redis at `url`; None: the client's own limiter, in this process."""
    if url is None:
        return None
    try:
        from ...redis_limits import RedisLimiter
    except ImportError:
        raise UsageError("--redis-url needs redis: pip install 'yamarket-chats[redis]'") from None
    return RedisLimiter(url)


async def run_sync(
    title: str,
    client: ChatsClient,
    business_ids: Sequence[int],
    sink: Sink,
    display: ProgressDisplay,
    out: TextIO | None,
    **options: Any,
) -> SyncReport:
    """A sync with its display; on interruption, say what was kept, then re-raise."""
    last = SyncReport()

    def progress(report: SyncReport) -> None:
        nonlocal last
        last = report
        display.update(report)

    display.start(title)
    try:
        report = await sync(client, business_ids, sink, progress=progress, **options)
    except BaseException as exc:
        display.stop(failed=True)
        if last.pages or isinstance(exc, asyncio.CancelledError):
            print(
                f"{title}: stopped; saved {last.messages} new messages from {last.pages} pages,"
                " run again to continue",
                file=sys.stderr,
                flush=True,
            )
        raise
    display.stop()
    if out is not None:
        print(f"{title}: {summary(report, display.waited())}", file=out, flush=True)
    return report


async def _run_fleet(args: argparse.Namespace, client: ChatsClient, sink: Sink) -> int:
    """--worker / --follow: one line per business synced; exit 1 if a business failed."""
    from ...fleet import DEFAULT_INTERVAL, follow, run_worker

    def synced(business_id: int, report: SyncReport) -> None:
        if not args.quiet:
            waited = min(report.waited_seconds, report.elapsed)
            print(f"business {business_id}: {summary(report, waited)}", flush=True)

    options: dict[str, Any] = {"concurrency": args.concurrency, **filters(args)}
    options.update(skip_unchanged=not args.all_chats, on_synced=synced)
    interval = DEFAULT_INTERVAL if args.interval is None else args.interval
    if args.postgres_url:  # (open_sink made a PostgresSink)
        done = await run_worker(
            client,
            args.business_ids,
            cast("PostgresSink", sink),
            follow=args.follow,
            interval=interval,
            **options,
        )
    else:
        done = await follow(client, args.business_ids, sink, interval=interval, **options)
    for business_id, error in done.failed.items():
        reason = log_text(one_line(str(error), ()))  # the server's text
        print(f"yamarket-chats sync: business {business_id} failed: {reason}", file=sys.stderr)
    return EXIT_ERROR if done.failed else EXIT_OK


async def sync_command(args: argparse.Namespace) -> int:
    """Sync the business ids into the sink; the summary on stdout, progress on stderr."""
    limiter = make_limiter(args.redis_url)
    fleet = args.worker or args.follow
    clock = WaitClock()  # (a worker or a follower shows no progress: no hook to pay for)
    client = make_client(args, limiter, hooks=None if fleet else clock)
    async with contextlib.AsyncExitStack() as stack:
        if limiter is not None:
            stack.push_async_callback(limiter.close)
        # Opened first: a sink in use (exit 6) or unusable fails before any request.
        sink = await open_sink(args, stack)
        await stack.enter_async_context(client)
        if fleet:
            return await _run_fleet(args, client, sink)
        display = make_display(sys.stderr, quiet=args.quiet, clock=clock)
        await run_sync(
            "sync",
            client,
            args.business_ids,
            sink,
            display,
            None if args.quiet else sys.stdout,
            concurrency=args.concurrency,
            skip_unchanged=not args.all_chats,
            **filters(args),
        )
    return EXIT_OK
