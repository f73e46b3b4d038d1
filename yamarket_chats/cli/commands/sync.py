"""``sync``: chats and new messages into a sink, once, or for ever with --follow / --worker.

The client gets its own limiter (or Redis with --redis-url) and, for a
one-off sync, a `WaitClock` as its hook, which the progress display and the
summary read for the share of the run spent waiting on limits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO, cast

from ...client import ChatsClient
from ...ingest import Sink, SyncReport, sync
from ...limits import Limiter
from ..connect import make_client
from ..failures import EXIT_ERROR, EXIT_OK, UsageError
from ..logs import json_logs, say
from ..output import log_text, one_line
from ..progress import ProgressDisplay, make_display, summary
from ..sink import open_sink
from ..waits import WaitClock
from .common import filters

if TYPE_CHECKING:
    from ...metrics import SyncMetrics
    from ...sinks import PostgresSink
    from ..endpoints import Endpoints

__all__ = ["make_limiter", "run_sync", "sync_command"]


def make_limiter(url: str | None, cluster: bool = False) -> Limiter | None:
    """Quotas in Redis at `url` (a node of a cluster with `cluster`); None: the client's own
    limiter, in this process."""
    if url is None:
        if cluster:
            raise UsageError("--redis-cluster needs --redis-url")
        return None
    try:
        from ...redis_limits import RedisLimiter
    except ImportError:
        raise UsageError("--redis-url needs redis: pip install 'yamarket-chats[redis]'") from None
    return RedisLimiter(url, cluster=True) if cluster else RedisLimiter(url)


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
            say(
                f"{title}: stopped; saved {last.messages} new messages from {last.pages} pages,"
                " run again to continue",
                level=logging.WARNING,
                messages=last.messages,
                pages=last.pages,
            )
        raise
    display.stop()
    if out is not None:
        waited = display.waited()
        say(f"{title}: {summary(report, waited)}", stream=out, **_figures(report, waited))
    return report


def _figures(report: SyncReport, waited: float) -> dict[str, Any]:
    """A report's numbers, as the fields of a JSON line."""
    return {
        "chats": report.chats_done,
        "messages": report.messages,
        "pages": report.pages,
        "requests": report.requests,
        "retries": report.retries,
        "rate_limited": report.rate_limited,
        "waited_seconds": round(waited, 3),
        "elapsed_seconds": round(report.elapsed, 3),
    }


async def _run_fleet(
    args: argparse.Namespace, client: ChatsClient, sink: Sink, **options: Any
) -> int:
    """--worker / --follow: one line per business synced; exit 1 if a business failed."""
    from ...fleet import DEFAULT_INTERVAL, follow, run_worker

    def synced(business_id: int, report: SyncReport) -> None:
        if not args.quiet:
            waited = min(report.waited_seconds, report.elapsed)
            say(
                f"business {business_id}: {summary(report, waited)}",
                stream=sys.stdout,
                business_id=business_id,
                **_figures(report, waited),
            )

    options.update(concurrency=args.concurrency, **filters(args))
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
        say(
            f"yamarket-chats sync: business {business_id} failed: {reason}",
            level=logging.ERROR,
            business_id=business_id,
        )
    return EXIT_ERROR if done.failed else EXIT_OK


async def sync_command(args: argparse.Namespace) -> int:
    """Sync the business ids into the sink; the summary on stdout, progress on stderr."""
    limiter = make_limiter(args.redis_url, args.redis_cluster)
    fleet = args.worker or args.follow
    clock = WaitClock()  # (a worker or a follower shows no progress: no hook to pay for)
    client = make_client(args, limiter, hooks=None if fleet else clock)
    options: dict[str, Any] = {}
    if args.max_businesses is not None:  # else each mode's own default
        options["max_businesses"] = args.max_businesses
    endpoints = None
    if args.metrics_port is not None:  # before any connection: a missing extra fails first
        from ...metrics import SyncMetrics
        from ..endpoints import Endpoints

        options["observer"] = syncs = SyncMetrics(args.business_ids)
        endpoints = Endpoints(client, syncs)
    async with contextlib.AsyncExitStack() as stack:
        if limiter is not None:
            stack.push_async_callback(limiter.close)
        # Opened first: a sink in use (exit 6) or unusable fails before any request.
        sink = await open_sink(args, stack)
        await stack.enter_async_context(client)
        if endpoints is not None:
            if args.postgres_url:
                await _restore_lag(cast("PostgresSink", sink), options["observer"], args)
            await _serve(args, stack, endpoints, sink, limiter)
        if fleet:
            return await _run_fleet(args, client, sink, **options)
        display = make_display(sys.stderr, quiet=args.quiet or json_logs(), clock=clock)
        await run_sync(
            "sync",
            client,
            args.business_ids,
            sink,
            display,
            None if args.quiet else sys.stdout,
            concurrency=args.concurrency,
            skip_unchanged=not args.all_chats,
            **options,
            **filters(args),
        )
    return EXIT_OK


async def _restore_lag(sink: PostgresSink, syncs: SyncMetrics, args: argparse.Namespace) -> None:
    """Each business's last fleet sync, from the leases: a restarted worker's lag goes on
    from there instead of starting again at zero."""
    from ...fleet.leases import last_finished

    syncs.restore(await last_finished(sink, args.business_ids))


async def _serve(
    args: argparse.Namespace,
    stack: contextlib.AsyncExitStack,
    endpoints: Endpoints,
    sink: Sink,
    limiter: Limiter | None,
) -> None:
    """Start --metrics-port's server for the rest of the command, and say where it listens."""
    from ..endpoints import readiness_checks

    checks = readiness_checks(sink, limiter)
    url = await endpoints.start(args.metrics_host, args.metrics_port, checks)
    stack.push_async_callback(endpoints.close)
    say(f"yamarket-chats: serving {url}/metrics, /healthz and /readyz", url=url)
