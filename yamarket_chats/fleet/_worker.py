"""`run_worker`: one process of a fleet, syncing the businesses whose leases it claims.

The loop claims due businesses, up to ``max_businesses`` at once, syncs each
under its lease (`leases.holding` renews it; every write is fenced by it),
releases it with the outcome, and polls for more until nothing is pending
(or, in follow mode, until stopped).

Why the cap is high by default (:data:`~yamarket_chats.ingest.DEFAULT_MAX_BUSINESSES`,
as for a plain sync): the quota is per cabinet, so a cabinet that waits
unclaimed for a worker's free slot wastes its quota for as long as it waits.
The old cap of 4 made a fleet's quota use depend on its size (1 worker over
20 cabinets used 20% of their quota, 4 workers 80%). A high cap keeps every
cabinet's quota busy whatever the number of workers, and still keeps one
worker's event loop responsive when it could claim thousands. The leases
give each business to one worker at a time, and workers that start together
split the businesses, since each claims one row per statement and skips the
rows the others are claiming.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

from .._closing import wait_out
from ..client import ChatsClient
from ..ingest import DEFAULT_MAX_BUSINESSES, SyncReport, sync
from ..sinks.postgres import Fenced, PostgresSink
from ._report import BUSINESS_ERRORS, Synced, WorkerReport, count_failed, count_synced, logger
from ._running import DEFAULT_INTERVAL, RunningSyncs, check_options, has_room
from .leases import (
    DEFAULT_LEASE_SECONDS,
    Lease,
    LeaseLostError,
    Leases,
    holding,
)


async def run_worker(
    client: ChatsClient,
    business_ids: Iterable[int],
    sink: PostgresSink,
    *,
    follow: bool = False,
    interval: float = DEFAULT_INTERVAL,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_businesses: int | None = DEFAULT_MAX_BUSINESSES,
    stop: asyncio.Event | None = None,
    worker_id: str | None = None,
    on_synced: Synced | None = None,
    **sync_options: Any,
) -> WorkerReport:
    """Sync ``business_ids`` into ``sink`` as one worker of a fleet (see `yamarket_chats.fleet`).

    :param follow: keep running; each business is synced again ``interval``
        seconds after its last sync finished (or failed).
    :param lease_seconds: how long a business stays locked after its worker
        stops renewing the lease while its database session lives on (a hung
        worker, a machine cut off without closing its connections); a killed
        worker's session ends with it, and its leases are free at once. The
        lease is renewed every third of it.
    :param max_businesses: the most businesses this worker syncs at the same
        time (64; ``None``: no cap, every due business nobody else holds).
        Give the fleet at least ``len(business_ids) / max_businesses``
        workers, or the cabinets left over wait, their quota unused.
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
    after the pages in flight are committed, even a lease whose claim was
    committing at that moment.
    """
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
    check_options(interval, max_businesses)
    leases = Leases(sink, lease_seconds, worker_id)
    report = WorkerReport(worker_id=leases.owner)
    await sink.open()
    ids = list(dict.fromkeys(business_ids))
    started_at = await leases.register(ids)
    worker = _Worker(client, sink, leases, report, on_synced, sync_options)
    poll = min(1.0, lease_seconds / 4, interval / 2 if follow and interval > 0 else 1.0)
    since = None if follow else started_at
    async with RunningSyncs[Lease](stop or asyncio.Event()) as running:
        while True:
            if not running.stop.is_set():
                while has_room(len(running), max_businesses):
                    lease = await leases.claim(ids, since, interval)  # none held if cancelled
                    if lease is None:
                        break
                    # Nothing awaits between the claim and this, so the task's first step
                    # (into `holding`, which releases the lease) runs before this loop can
                    # resume, and so before its exit could cancel the task.
                    running.start(lease, worker.sync_leased(lease))
            if not running and (
                running.stop.is_set() or not (follow or await leases.pending(ids, since))
            ):
                return report
            await running.wait(poll)


@dataclasses.dataclass
class _Worker:
    """One worker's syncs: each under the lease it claimed, released with its outcome."""

    client: ChatsClient
    sink: PostgresSink
    leases: Leases
    report: WorkerReport
    on_synced: Synced | None
    sync_options: dict[str, Any]

    async def sync_leased(self, lease: Lease) -> None:
        """Sync one business under ``lease``; stopped at once if the lease is lost."""
        fenced = Fenced(self.sink, lease)
        async with holding(self.leases, lease) as renewal:
            task = asyncio.ensure_future(
                sync(self.client, [lease.business_id], fenced, **self.sync_options)
            )
            renewal.add_done_callback(lambda _: task.cancel())
            try:
                await asyncio.wait([task])
            finally:
                if not task.done():
                    task.cancel()
                    await wait_out(task)  # pages handed to the sink are finished first
            await self._settle(lease, task, renewal)

    async def _settle(
        self,
        lease: Lease,
        task: asyncio.Future[SyncReport],
        renewal: asyncio.Future[Exception | None],
    ) -> None:
        """Count the end of ``lease``'s sync and release the lease with its outcome.

        A fatal error (the database under the renewal, anything but an API
        error) is raised instead: `holding` then releases the lease unfinished.
        """
        business_id = lease.business_id
        if renewal.done():  # the renewal ended: the database failed, or the lease is lost
            failure = renewal.result()
            if failure is not None:
                raise failure
        if renewal.done() or (
            not task.cancelled() and isinstance(task.exception(), LeaseLostError)
        ):
            self.report.leases_lost += 1
            extra = {"business_id": business_id}
            logger.warning("lost the lease on business %s", business_id, extra=extra)
            return  # it is someone else's now
        exc = task.exception()
        if exc is None:
            await self.leases.release(lease, finished=True)
            count_synced(self.report, business_id, task.result(), self.on_synced)
        elif isinstance(exc, BUSINESS_ERRORS):
            await self.leases.release(lease, finished=False, error=str(exc))
            count_failed(self.report, business_id, exc)
        else:
            raise exc
