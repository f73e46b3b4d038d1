"""`follow`: keep any sink a mirror, one process, no leases.

Each business is due again ``interval`` seconds (on this process's monotonic
clock) after its last sync ended; the loop starts the due ones, up to
``max_businesses`` at once (a high default, as `run_worker`: each cabinet has
a quota of its own, which a cabinet waiting for a free slot leaves unused),
and sleeps until the next one is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

from ..client import ChatsClient
from ..ingest import DEFAULT_MAX_BUSINESSES, Sink, sync
from ._report import BUSINESS_ERRORS, Synced, WorkerReport, count_failed, count_synced
from ._running import DEFAULT_INTERVAL, RunningSyncs, check_options
from .leases import default_worker_id

#: The longest sleep between two looks at the schedule.
_MAX_SLEEP = 3600.0


async def follow(
    client: ChatsClient,
    business_ids: Iterable[int],
    sink: Sink,
    *,
    interval: float = DEFAULT_INTERVAL,
    max_businesses: int | None = DEFAULT_MAX_BUSINESSES,
    stop: asyncio.Event | None = None,
    on_synced: Synced | None = None,
    **sync_options: Any,
) -> WorkerReport:
    """Keep ``sink`` a mirror: sync each business, then again ``interval`` s after it finished.

    One process, any sink (for a fleet on PostgreSQL use `run_worker` with
    ``follow=True``). Up to ``max_businesses`` syncs run at once (``None``:
    every due business). A business
    whose sync fails with an API error is logged, recorded in
    ``report.failed`` and tried again after ``interval``; any other error
    stops everything and is raised. Returns when ``stop`` is set (after the
    syncs in progress finish).
    """
    check_options(interval, max_businesses)
    report = WorkerReport(worker_id=default_worker_id())
    stop = stop or asyncio.Event()
    gate: contextlib.AbstractAsyncContextManager[Any] = (
        contextlib.nullcontext() if max_businesses is None else asyncio.Semaphore(max_businesses)
    )
    due = {b: 0.0 for b in dict.fromkeys(business_ids)}  # monotonic time each business is due

    async def one(business_id: int) -> None:
        async with gate:
            if stop.is_set():
                return
            try:
                result = await sync(client, [business_id], sink, **sync_options)
            except BUSINESS_ERRORS as exc:
                count_failed(report, business_id, exc)
            else:
                count_synced(report, business_id, result, on_synced)
            finally:
                due[business_id] = time.monotonic() + interval

    async with RunningSyncs[int](stop) as running:
        while not stop.is_set() or running:
            now = time.monotonic()
            if not stop.is_set():
                busy = set(running.tasks.values())
                for b, at in due.items():
                    if b not in busy and at <= now:
                        due[b] = float("inf")
                        running.start(b, one(b))
            soonest = min(due.values(), default=now + interval)
            await running.wait(max(0.0, min(soonest - now, _MAX_SLEEP)))
    return report
