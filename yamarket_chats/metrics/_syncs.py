"""`SyncMetrics`: what the syncs of one process did, per business, as plain counters.

A `yamarket_chats.ingest.SyncObserver`: the sync calls it inline, so each
event is a few integer bumps on one event loop (no locks). Time is wall-clock
Unix time (``time.time``, injectable): the lag it reports is meant to be
compared with the scraper's clock, as Prometheus does with ``time()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..fleet.leases import LeaseLostError

__all__ = ["BusinessSyncStats", "SyncMetrics"]


@dataclass(frozen=True, slots=True)
class BusinessSyncStats:
    """One business's syncs in this process, at one moment."""

    business_id: int
    messages: int  #: new messages stored
    pages: int  #: history pages stored
    completed: int  #: syncs that completed
    failed: (
        int  #: syncs that raised (not a lost lease; cancellations, e.g. a shutdown, not counted)
    )
    lost: int  #: syncs stopped by a lost lease (another holder took the business over)
    running: int  #: syncs in progress (0 or 1)
    leased: int  #: of which under a lease (PostgreSQL's claim, a fleet worker's)
    last_success: float | None  #: Unix time the last completed sync ended
    #: seconds since the last completed sync ended, or since the business was
    #: first known to this object when none has completed yet
    lag_seconds: float


class _Business:
    __slots__ = (
        "completed",
        "failed",
        "last_success",
        "leased",
        "lost",
        "messages",
        "pages",
        "running",
        "since",
    )

    def __init__(self, since: float) -> None:
        self.since = since
        self.messages = self.pages = self.completed = self.failed = self.lost = 0
        self.running = self.leased = 0
        self.last_success: float | None = None


class SyncMetrics:
    """Per-business counters of the syncs that pass it as their ``observer``.

    :param business_ids: the businesses this process is meant to keep synced:
        each shows a lag from the moment this object was made until its first
        sync completes, so a business that never syncs is seen (and alerted on).
        Others are added as their syncs start.
    :param clock: Unix time in seconds (tests inject one).
    """

    def __init__(
        self, business_ids: Iterable[int] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        now = clock()
        self._businesses = {business_id: _Business(now) for business_id in business_ids}

    def _business(self, business_id: int) -> _Business:
        found = self._businesses.get(business_id)
        if found is None:
            found = self._businesses[business_id] = _Business(self._clock())
        return found

    def business_started(self, business_id: int, leased: bool) -> None:
        """A sync of the business begins (under a lease when ``leased``)."""
        business = self._business(business_id)
        business.running += 1
        business.leased += leased

    def page_saved(self, business_id: int, messages: int) -> None:
        """A page of ``messages`` new messages is stored."""
        business = self._business(business_id)
        business.pages += 1
        business.messages += messages

    def business_ended(self, business_id: int, error: BaseException | None) -> None:
        """A sync ended: completed (``None``), failed, or cancelled (not a failure)."""
        business = self._business(business_id)
        business.running = max(0, business.running - 1)
        business.leased = min(business.leased, business.running)
        if error is None:
            business.completed += 1
            business.last_success = self._clock()
        elif isinstance(error, LeaseLostError):  # taken over: the business goes on elsewhere
            business.lost += 1
        elif not isinstance(error, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            business.failed += 1

    def restore(self, last_success: Mapping[int, float]) -> None:
        """When each business last completed a sync before this process (Unix time), e.g.
        the fleet's ``leases.finished_at``: its lag then counts from there, not from this
        process's start, so restarts do not hide a business that stopped syncing."""
        for business_id, when in last_success.items():
            business = self._business(business_id)
            if business.last_success is None or business.last_success < when:
                business.last_success = when

    @property
    def leases_held(self) -> int:
        """Businesses this process syncs under a lease right now."""
        return sum(b.leased for b in self._businesses.values())

    def snapshot(self) -> tuple[BusinessSyncStats, ...]:
        """Every business's counters, by business id (cheap: call it at each scrape)."""
        now = self._clock()
        return tuple(
            BusinessSyncStats(
                business_id=business_id,
                messages=b.messages,
                pages=b.pages,
                completed=b.completed,
                failed=b.failed,
                lost=b.lost,
                running=b.running,
                leased=b.leased,
                last_success=b.last_success,
                lag_seconds=max(0.0, now - (b.since if b.last_success is None else b.last_success)),
            )
            for business_id, b in sorted(self._businesses.items())
        )
