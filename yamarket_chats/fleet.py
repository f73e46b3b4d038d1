"""Many workers, one set of cabinets: business leases in PostgreSQL, and follow mode.

`run_worker` is one process of a fleet. Every worker of a fleet is given the
same business ids and the same database; each business is synced by one
worker at a time, under a **row lease** in the sink's ``leases`` table:

- a worker claims a free (or expired) lease with ``UPDATE ... WHERE
  business_id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, which bumps
  the lease's ``token`` and sets ``expires_at = now() + lease_seconds``:
  workers racing for leases skip each other's rows instead of waiting;
- while it syncs, it renews the lease every third of ``lease_seconds``;
- every write of that sync is fenced by the token in the same statement
  (`PostgresSink` ``lease=``): once another worker has claimed the business,
  the old holder cannot write a single row, even if it was only paused;
- a worker killed with SIGKILL renews nothing, so its leases lapse after
  ``lease_seconds`` and another worker continues from the checkpoints: the
  pages it had committed stay, the pages in flight are fetched again.

Time is the database's (``now()``), so the clocks of the workers' machines do
not matter. Quotas are shared by giving every worker's client the same
`RedisLimiter`.

Without ``follow``, a worker syncs each business that nobody finished (or
failed) since the worker started, waits for the ones others hold (taking
them over if their holder dies), and returns when all are done. With
``follow``, it never returns: a business is due again ``interval`` seconds
after its last sync finished.

A plain `sync` into the same `PostgresSink` takes the same lease row on each
of its businesses (`PostgresSink.claim`; the lease code lives there), so it
never overlaps a worker on one business: a worker skips a business a sync
holds, and a sync waits ``lock_timeout`` for a worker's, then fails.

`follow` is the same loop for one process and any sink (SQLite, JSON Lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .client import ChatsClient
from .errors import ApiError, PaginationError, TransportError
from .ingest import Sink, SyncReport, sync
from .sinks.postgres import (
    DEFAULT_LEASE_SECONDS,
    Fenced,
    Lease,
    LeaseLostError,
    Leases,
    PostgresSink,
    default_worker_id,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_LEASE_SECONDS",
    "Lease",
    "LeaseLostError",
    "WorkerReport",
    "follow",
    "run_worker",
]

logger = logging.getLogger("yamarket_chats")

#: Seconds between the end of a cabinet's sync and the next one, in follow mode.
DEFAULT_INTERVAL = 60.0

# Errors of one business (the API refused or failed it): recorded, retried
# later; any other error (database, Redis, a bug) stops the worker.
_BUSINESS_ERRORS = (ApiError, TransportError, PaginationError)

Synced = Callable[[int, SyncReport], None]


@dataclasses.dataclass
class WorkerReport:
    """What a worker (or `follow`) did; updated live."""

    worker_id: str = ""  #: the owner name written into the leases
    synced: int = 0  #: business syncs completed
    messages: int = 0  #: new messages written
    pages: int = 0  #: history pages written
    requests: int = 0  #: HTTP requests sent by the syncs
    rate_limited: int = 0  #: 420 answers received
    leases_lost: int = 0  #: syncs stopped because another worker took the business over
    failed: dict[int, str] = dataclasses.field(default_factory=dict)
    """Business id -> the error of its last failed sync (cleared by a success)."""

    def add(self, business_id: int, report: SyncReport) -> None:
        """Count a finished sync of one business."""
        self.synced += 1
        self.messages += report.messages
        self.pages += report.pages
        self.requests += report.requests
        self.rate_limited += report.rate_limited
        self.failed.pop(business_id, None)


@dataclasses.dataclass
class _Held:
    lease: Lease
    lost: bool = False
    error: BaseException | None = None


async def run_worker(
    client: ChatsClient,
    business_ids: Iterable[int],
    sink: PostgresSink,
    *,
    follow: bool = False,
    interval: float = DEFAULT_INTERVAL,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_businesses: int = 4,
    stop: asyncio.Event | None = None,
    worker_id: str | None = None,
    on_synced: Synced | None = None,
    **sync_options: Any,
) -> WorkerReport:
    """Sync ``business_ids`` into ``sink`` as one worker of a fleet (see the module docs).

    :param follow: keep running; each business is synced again ``interval``
        seconds after its last sync finished (or failed).
    :param lease_seconds: how long a business stays locked after its worker
        stops renewing the lease (killed, hung, cut off from the database);
        the lease is renewed every third of it.
    :param max_businesses: businesses this worker syncs at the same time.
    :param stop: when set, claim nothing more, finish the syncs in progress
        and return.
    :param on_synced: called with the business id and its `SyncReport` after
        each completed sync.
    :param sync_options: passed to `yamarket_chats.ingest.sync` (filters,
        ``concurrency``, ``skip_unchanged``, ``settle_seconds``).

    A business whose sync fails with an API error is recorded in
    ``report.failed`` (and the lease row's ``error``) and retried after
    ``interval`` in follow mode; without follow it counts as done. Any other
    error (database, Redis) stops the worker: its leases are released and
    the error is raised. Cancelling the worker releases its leases at once,
    after the pages in flight are committed.
    """
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
    if interval < 0:
        raise ValueError(f"interval must be >= 0, got {interval}")
    if max_businesses < 1:
        raise ValueError(f"max_businesses must be >= 1, got {max_businesses}")
    ids = list(dict.fromkeys(business_ids))
    report = WorkerReport(worker_id=worker_id or default_worker_id())
    await sink.open()
    leases = Leases(sink, report.worker_id, lease_seconds)
    started_at = await leases.register(ids)
    since = None if follow else started_at
    poll = min(1.0, lease_seconds / 4, interval / 2 if follow and interval > 0 else 1.0)
    stop = stop or asyncio.Event()
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    active: dict[asyncio.Future[Any], _Held] = {}

    async def one(held: _Held) -> None:
        lease = held.lease
        task = asyncio.ensure_future(
            sync(client, [lease.business_id], Fenced(sink, lease), **sync_options)
        )
        beat = asyncio.ensure_future(_heartbeat(leases, held, task))
        released = False
        try:
            await asyncio.wait([task])
            if held.error is not None:
                raise held.error  # the database failed under the heartbeat
            if held.lost or (not task.cancelled() and isinstance(task.exception(), LeaseLostError)):
                report.leases_lost += 1
                logger.warning("lost the lease on business %s", lease.business_id)
                released = True  # it is someone else's now
                return
            exc = task.exception()
            if exc is None:
                result = task.result()
                await leases.release(lease, finished=True)
                released = True
                report.add(lease.business_id, result)
                if on_synced is not None:
                    on_synced(lease.business_id, result)
            elif isinstance(exc, _BUSINESS_ERRORS):
                logger.warning("sync of business %s failed: %s", lease.business_id, exc)
                await leases.release(lease, finished=False, error=str(exc))
                released = True
                report.failed[lease.business_id] = str(exc)
            else:
                raise exc
        finally:
            beat.cancel()
            if not task.done():
                task.cancel()
                # Pages handed to the sink are finished before the task ends.
                while not task.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([task])
            if not released:
                with contextlib.suppress(Exception):  # it lapses anyway
                    await asyncio.shield(leases.release(lease, finished=False))

    try:
        while True:
            if not stop.is_set():
                while len(active) < max_businesses:
                    lease = await leases.claim(ids, since, interval)
                    if lease is None:
                        break
                    held = _Held(lease)
                    active[asyncio.ensure_future(one(held))] = held
            if not active and (stop.is_set() or not (follow or await leases.pending(ids, since))):
                return report
            waits = [*active] if stopping.done() else [*active, stopping]
            done, _ = await asyncio.wait(waits, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in active:
                    del active[task]
                    task.result()  # a fatal error stops the worker
    finally:
        stopping.cancel()
        for task in active:
            task.cancel()
        if active:
            await asyncio.gather(*active, return_exceptions=True)


async def _heartbeat(leases: Leases, held: _Held, task: asyncio.Future[Any]) -> None:
    """Renew ``held`` every third of the lease; stop ``task`` if the lease is lost."""
    while True:
        await asyncio.sleep(leases.seconds / 3)
        try:
            renewed = await leases.renew(held.lease)
        except Exception as exc:
            held.error = exc
            task.cancel()
            return
        if not renewed:
            held.lost = True
            task.cancel()
            return


async def follow(
    client: ChatsClient,
    business_ids: Iterable[int],
    sink: Sink,
    *,
    interval: float = DEFAULT_INTERVAL,
    max_businesses: int = 4,
    stop: asyncio.Event | None = None,
    on_synced: Synced | None = None,
    **sync_options: Any,
) -> WorkerReport:
    """Keep ``sink`` a mirror: sync each business, then again ``interval`` s after it finished.

    One process, any sink (for a fleet on PostgreSQL use `run_worker` with
    ``follow=True``). Up to ``max_businesses`` syncs run at once. A business
    whose sync fails with an API error is logged, recorded in
    ``report.failed`` and tried again after ``interval``; any other error
    stops everything and is raised. Returns when ``stop`` is set (after the
    syncs in progress finish).
    """
    if interval < 0:
        raise ValueError(f"interval must be >= 0, got {interval}")
    if max_businesses < 1:
        raise ValueError(f"max_businesses must be >= 1, got {max_businesses}")
    ids = list(dict.fromkeys(business_ids))
    report = WorkerReport(worker_id=default_worker_id())
    stop = stop or asyncio.Event()
    gate = asyncio.Semaphore(max_businesses)
    due = {b: 0.0 for b in ids}  # monotonic time each business is due

    async def one(business_id: int) -> None:
        async with gate:
            if stop.is_set():
                return
            try:
                result = await sync(client, [business_id], sink, **sync_options)
            except _BUSINESS_ERRORS as exc:
                logger.warning("sync of business %s failed: %s", business_id, exc)
                report.failed[business_id] = str(exc)
            else:
                report.add(business_id, result)
                if on_synced is not None:
                    on_synced(business_id, result)
            finally:
                due[business_id] = time.monotonic() + interval

    running: dict[asyncio.Future[Any], int] = {}
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set() or running:
            now = time.monotonic()
            if not stop.is_set():
                busy = set(running.values())
                for b in ids:
                    if b not in busy and due[b] <= now:
                        due[b] = float("inf")
                        running[asyncio.ensure_future(one(b))] = b
            soonest = min(due.values(), default=now + interval)
            timeout = max(0.0, min(soonest - now, 3600.0))
            waits = [*running] if stopping.done() else [*running, stopping]
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task in running:
                    del running[task]
                    task.result()
        return report
    finally:
        stopping.cancel()
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
