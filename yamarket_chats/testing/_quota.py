"""Rate limits: fixed-window quotas and the parallel-requests cap, and their 420 texts.

The texts are the API's (https://yandex.ru/dev/market/partner-api/doc/ru/concepts/limits):
the parallel cap's is "Hit rate limit of 4 parallel requests for businessId 12345"
for ``/businesses/{businessId}/...`` paths, where the cap applies per business;
a spent quota's, of which the page shows no example, says the same of the
quota: "Hit rate limit of 1000 requests per hour for resource
/v2/businesses/{businessId}/chats/new for businessId 12345". Clients must
not parse either (the library reads the ``X-RateLimit-Resource-*`` headers).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from email.utils import formatdate

from ._config import FakeMarketConfig


class QuotaBook:
    """Fixed windows per (business, operation), aligned to multiples of the window.

    A request counts on arrival; ``refund`` gives it back (5xx answers).
    ``clock`` (seconds since the epoch) places the windows; tests may swap it
    for a virtual one to cross windows without waiting.
    """

    def __init__(self, config: FakeMarketConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._window = config.quota_window
        self.clock = clock
        # (business, operation) -> [window index, used]
        self._used: dict[tuple[int, str], list[int]] = {}
        self._date = (-1, "")  # (second, its HTTP date): one formatdate per second

    def _slot(self, key: tuple[int, str]) -> list[int]:
        index = int(self.clock() // self._window)
        slot = self._used.get(key)
        if slot is None or slot[0] != index:
            slot = self._used[key] = [index, 0]
        return slot

    def take(self, business_id: int, operation: str) -> int | None:
        """Count one request; return its window index, or ``None`` if the quota is spent."""
        slot = self._slot((business_id, operation))
        if slot[1] >= self._config.quota(operation):
            return None
        slot[1] += 1
        return slot[0]

    def refund(self, business_id: int, operation: str, window: int) -> None:
        """Give back a request counted in ``window`` (if that window is still current)."""
        slot = self._slot((business_id, operation))
        if slot[0] == window and slot[1] > 0:
            slot[1] -= 1

    def refusal(self, business_id: int, operation: str, resource: str) -> str:
        """The 420 text of a spent quota of `operation` (`resource`: its path in the spec)."""
        limit = self._config.quota(operation)
        return (
            f"Hit rate limit of {limit} requests per {_period(self._window)} "
            f"for resource {resource} for businessId {business_id}"
        )

    def headers(self, business_id: int, operation: str) -> dict[str, str]:
        """The ``X-RateLimit-Resource-*`` headers, and ``Date``, as of now."""
        index, used = self._slot((business_id, operation))
        limit = self._config.quota(operation)
        # Never report a reset earlier than the real one.
        until = math.ceil((index + 1) * self._window)
        return {
            # On the windows' clock, so that a client reads -Until against it.
            "Date": self._http_date(),
            "X-RateLimit-Resource-Limit": str(limit),
            "X-RateLimit-Resource-Remaining": str(max(limit - used, 0)),
            "X-RateLimit-Resource-Until": formatdate(until, usegmt=True),
        }

    def _http_date(self) -> str:
        second = int(self.clock())
        if second != self._date[0]:
            self._date = (second, formatdate(second, usegmt=True))
        return self._date[1]


class ParallelGate:
    """Counts in-flight requests per business and remembers the peak."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.in_flight: dict[int, int] = {}
        #: Highest number of requests processed at once, per business.
        self.peak: dict[int, int] = {}
        self._changed = asyncio.Event()

    def enter(self, business_id: int) -> bool:
        """Admit one request, or return ``False`` if the cap is reached."""
        current = self.in_flight.get(business_id, 0)
        if self.cap is not None and current >= self.cap:
            return False
        current += 1
        self.in_flight[business_id] = current
        if current > self.peak.get(business_id, 0):
            self.peak[business_id] = current
        self._notify()
        return True

    def refusal(self, business_id: int) -> str:
        """The 420 text of a request beyond the cap."""
        return f"Hit rate limit of {self.cap} parallel requests for businessId {business_id}"

    def leave(self, business_id: int) -> None:
        """Release a request admitted by ``enter``."""
        self.in_flight[business_id] -= 1
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, business_id: int, count: int) -> None:
        """Return once ``count`` requests of the business are in flight."""
        while self.in_flight.get(business_id, 0) < count:
            await self._changed.wait()


_PERIODS = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}


def _period(window: float) -> str:
    """A quota window in words: "hour" for the spec's hourly quotas, else seconds."""
    return _PERIODS.get(window) or f"{window:g} seconds"
