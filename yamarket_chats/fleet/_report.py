"""What a worker or `follow` did, and how the end of one business's sync counts.

Shared by both loops so that a completed sync and a failed one are counted,
logged and reported to ``on_synced`` the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..errors import ApiError, PaginationError, TransportError
from ..ingest import SyncReport

logger = logging.getLogger("yamarket_chats")

#: Errors of one business (the API refused or failed it): recorded, retried
#: later; any other error (database, Redis, a bug) stops the loop.
BUSINESS_ERRORS = (ApiError, TransportError, PaginationError)

Synced = Callable[[int, SyncReport], None]
"""``on_synced(business_id, report)``: called after each completed sync."""


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


def count_synced(
    report: WorkerReport, business_id: int, result: SyncReport, on_synced: Synced | None
) -> None:
    """A business's sync completed: count it, then tell ``on_synced``."""
    report.add(business_id, result)
    if on_synced is not None:
        on_synced(business_id, result)


def count_failed(report: WorkerReport, business_id: int, error: BaseException) -> None:
    """A business's sync failed with one of `BUSINESS_ERRORS`: log and record it."""
    extra = {"business_id": business_id}
    logger.warning("sync of business %s failed: %s", business_id, error, extra=extra)
    report.failed[business_id] = str(error)
