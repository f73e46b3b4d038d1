"""Client-side rate limits: token buckets, the server's own count, parallel slots.

Three things decide when a request may go out:

1. a token bucket per (business id, method) from aiolimiter, which spreads the
   load at the configured rate with a small burst;
2. the server's view of the same quota, read from the ``X-RateLimit-Resource-*``
   headers of every answer: when the server says the window is spent (another
   process used it, a restart forgot it), requests wait for ``-Until`` instead
   of running into a 420;
3. a semaphore per business id capping requests in flight (the API answers 420
   beyond 4). Waiting for quota never holds a slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Final, Protocol, TypeGuard, runtime_checkable

from aiolimiter import AsyncLimiter

from .errors import InvalidRequestError

__all__ = [
    "DEFAULT_LIMITS",
    "METHODS",
    "NOT_SENT",
    "Limiter",
    "Limits",
    "RateLimit",
    "WaitTooLong",
]

METHODS = (
    "create_chat",
    "get_chats",
    "get_chat",
    "get_chat_history",
    "get_chat_message",
    "send_message_to_chat",
    "send_file_to_chat",
)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`amount` requests per `period_seconds`, per business id and method.

    `burst` is how many requests may go out back to back after a quiet spell;
    by default a minute's worth (at least 1), since the API asks for load
    spread over the hour rather than the whole hourly amount at once.
    """

    amount: int
    period_seconds: float = 3600.0
    burst: int | None = None

    def __post_init__(self) -> None:
        # InvalidRequestError is a ValueError; bounds keep the bucket's float math finite.
        amount, period, burst = self.amount, self.period_seconds, self.burst
        if not _is_int(amount) or not 1 <= amount <= _MAX_AMOUNT:
            raise InvalidRequestError(
                f"RateLimit.amount must be an integer in 1..{_MAX_AMOUNT:_}, got {_show(amount)}"
            )
        if not _is_number(period) or not _MIN_PERIOD <= period <= _MAX_PERIOD:
            raise InvalidRequestError(
                f"RateLimit.period_seconds must be a number of seconds in "
                f"{_MIN_PERIOD:g}..{_MAX_PERIOD:g}, got {_show(period)}"
            )
        if burst is not None and (not _is_int(burst) or not 1 <= burst <= amount):
            raise InvalidRequestError(
                f"RateLimit.burst must be None or an integer in 1..amount ({amount}), "
                f"got {_show(burst)}"
            )

    @property
    def effective_burst(self) -> int:
        """The burst in use: `burst`, or one minute's worth of `amount`."""
        if self.burst is not None:
            return self.burst
        per_minute = math.ceil(self.amount * 60.0 / self.period_seconds)
        return max(1, min(self.amount, per_minute))

    def new_limiter(self) -> AsyncLimiter:
        """A bucket with this rate; create it inside the loop that will use it."""
        burst = self.effective_burst
        return AsyncLimiter(burst, self.period_seconds * burst / self.amount)


_MAX_AMOUNT = 10**9
_MIN_PERIOD = 0.001
_MAX_PERIOD = 1e9


def _is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (``True`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite int or float (bool refused); huge ints are not finite floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _show(value: object) -> str:
    if type(value) in (int, float, bool, type(None)):
        return repr(value) if not (type(value) is int and abs(value) > 10**30) else "a huge int"
    return f"a value of type {type(value).__name__}"


DEFAULT_LIMITS: Mapping[str, RateLimit] = {
    "create_chat": RateLimit(1_000),
    "send_message_to_chat": RateLimit(1_000),
    "send_file_to_chat": RateLimit(1_000),
    "get_chat": RateLimit(1_000),
    "get_chat_message": RateLimit(1_000),
    "get_chats": RateLimit(10_000),
    "get_chat_history": RateLimit(10_000),
}

#: The status a request is finished with when it certainly never reached the
#: server (cancelled or refused before it went out, or written to a pooled
#: connection the server had already closed): a 5xx, so every limiter refunds it.
NOT_SENT: Final = 599

# Margin past the server's reset time before sending again: its clock and ours
# tick apart by a few milliseconds even on one machine.
_RESET_MARGIN = 0.05
# Below this, a difference between the server's Date and our clock is noise of
# Date's one-second resolution.
_SKEW_THRESHOLD = 2.0


@lru_cache(maxsize=64)
def _http_date(value: str) -> float:
    return parsedate_to_datetime(value).timestamp()


def _give_back(bucket: AsyncLimiter) -> None:
    # aiolimiter has no public way to return capacity; its level is the
    # bucket's fill, and lowering it is exactly a refund.
    bucket._level = max(0.0, bucket._level - 1)


def _bucket_wait(bucket: AsyncLimiter) -> float:
    """Seconds until the bucket has room for one more request after those queued."""
    queued = len(bucket._waiters)
    needed = bucket._level + queued + 1 - bucket.max_rate
    return max(0.0, needed * bucket.time_period / bucket.max_rate)


class WaitTooLong(Exception):
    """Raised by `Limiter.acquire` when the wait would pass the call's deadline.

    Raised at once, before sleeping in vain. ``retry_in``: seconds from now
    until the quota is known to be free again (``None`` when unknown, e.g.
    the parallel-request slots are all held). The client turns it into a
    :class:`~yamarket_chats.errors.RateLimitError` with ``retry_at``.
    """

    def __init__(self, retry_in: float | None) -> None:
        super().__init__(f"quota wait past the deadline (free again in {retry_in} s)")
        self.retry_in = retry_in


class Quota:
    """What the client knows of one (business id, method) quota."""

    __slots__ = ("in_flight", "limiter", "remaining", "reset_at")

    def __init__(self, limit: RateLimit | None) -> None:
        self.limiter = limit.new_limiter() if limit is not None else None
        self.remaining: int | None = None  # server's count, None when unknown
        self.reset_at = 0.0  # wall-clock time the server's window ends
        self.in_flight = 0

    def delay(self, now: float) -> float:
        """Seconds to wait before the server's window has quota again (0: go)."""
        remaining = self.remaining
        if remaining is None or remaining > 0:
            return 0.0
        if now < self.reset_at:
            return self.reset_at - now
        self.remaining = None  # the window is over: the server starts afresh
        return 0.0

    @property
    def spent(self) -> bool:
        """Whether the server's count, as known, is used up (until its reset)."""
        return self.remaining is not None and self.remaining <= 0

    def refund(self) -> None:
        """Give back what a request took: the server does not count a 5xx."""
        if self.remaining is not None:
            self.remaining += 1
        if self.limiter is not None:
            _give_back(self.limiter)

    def observe(self, remaining: int, reset_at: float) -> None:
        """Take in the server's count from an answer to one of our requests.

        The server's count is a ceiling over the bucket: when it knows less
        quota than the bucket (a lower limit, another process on the same
        cabinet, a restart), requests stop at zero until its window resets.
        """
        # Requests still in flight may or may not be in the server's count;
        # assume they are not, so the estimate can only err on the safe side.
        estimate = remaining - (self.in_flight - 1)
        if self.remaining is None or reset_at > self.reset_at + 0.5:
            self.remaining, self.reset_at = estimate, reset_at  # a new window
        elif reset_at > self.reset_at - 0.5:
            self.remaining = min(self.remaining, estimate)
        # else: a late answer from a window already over; nothing to learn


@runtime_checkable
class Limiter(Protocol):
    """Where a client's quotas live: in-process (`Limits`) or shared (Redis).

    For every request the client calls `acquire`, sends, then `finish` with
    the answer's status and headers (``None`` when no answer came), exactly
    once. Like the API, 2xx and 4xx answers spend quota and 5xx do not; a
    request that never reached the server is finished with :data:`NOT_SENT`
    (a 5xx), so it is refunded too.
    """

    waited: float  #: seconds requests spent waiting in `acquire`

    async def start(self) -> None:
        """Check the backend is usable (called when the client is entered)."""

    async def acquire(self, business_id: int, method: str, deadline: float | None = None) -> Any:
        """Wait until a request may go out; return a lease for `finish`.

        `deadline` is a ``time.monotonic()`` value: when the request could not
        go out before it, raise :class:`WaitTooLong` at once instead of waiting.
        """

    async def finish(
        self, lease: Any, status: int | None, headers: Mapping[str, str] | None
    ) -> float:
        """Give back the lease and learn from the answer's rate-limit headers.

        Returns the seconds until the server's window resets when the server
        says the quota is spent (0 otherwise), so a 420 can be told apart
        from the parallel-request cap.
        """

    async def close(self) -> None:
        """Release the backend's resources."""


class Limits:
    """In-process buckets and slots of one client, created lazily in its loop."""

    def __init__(self, limits: Mapping[str, RateLimit | None], max_concurrency: int | None) -> None:
        self._config = dict(limits)
        self._max_concurrency = max_concurrency
        self._quotas: dict[tuple[int, str], Quota] = {}
        self._slots: dict[int, asyncio.Semaphore] = {}
        self.waited = 0.0

    async def start(self) -> None:
        """Nothing to check for in-process limits."""

    async def close(self) -> None:
        """Nothing to release for in-process limits."""

    def _quota(self, business_id: int, method: str) -> Quota:
        key = (business_id, method)
        quota = self._quotas.get(key)
        if quota is None:
            quota = self._quotas[key] = Quota(self._config.get(method))
        return quota

    async def acquire(
        self, business_id: int, method: str, deadline: float | None = None
    ) -> tuple[int, Quota]:
        """Wait until a request may go out; the caller must `finish` it.

        With a `deadline` (``time.monotonic()``), raise `WaitTooLong` at once
        when the server's window or the bucket would keep the request past
        it, and give up waiting for a slot when the deadline comes.
        """
        quota = self._quota(business_id, method)
        started = time.monotonic()
        bucket = quota.limiter
        if deadline is not None:
            # Before taking anything: a spent window that ends too late.
            spent = quota.delay(time.time()) if quota.spent else 0.0
            if spent > 0 and started + spent + _RESET_MARGIN > deadline:
                raise WaitTooLong(spent)
            if bucket is not None and not bucket.has_capacity():
                wait = _bucket_wait(bucket)
                if started + wait > deadline:
                    raise WaitTooLong(wait)
        if bucket is not None:
            if deadline is None or bucket.has_capacity():
                await bucket.acquire()
            else:
                # The estimate above may be short (other tasks queue too):
                # never wait on the bucket past the deadline.
                try:
                    await asyncio.wait_for(bucket.acquire(), max(0.0, deadline - started))
                except asyncio.TimeoutError:
                    raise WaitTooLong(_bucket_wait(bucket)) from None
        slot = self._slot(business_id)
        try:
            while True:
                if quota.spent:
                    delay = quota.delay(time.time())
                    if delay > 0:
                        if deadline is not None and (
                            time.monotonic() + delay + _RESET_MARGIN > deadline
                        ):
                            raise WaitTooLong(delay)
                        await asyncio.sleep(delay + _RESET_MARGIN)
                        continue
                if slot is not None:
                    if deadline is None or not slot.locked():
                        await slot.acquire()
                    else:
                        try:
                            await asyncio.wait_for(slot.acquire(), deadline - time.monotonic())
                        except asyncio.TimeoutError:
                            raise WaitTooLong(None) from None
                    if quota.spent and quota.delay(time.time()) > 0:
                        slot.release()  # spent while we queued for the slot
                        continue
                break
        except BaseException:  # WaitTooLong, or the call cancelled while it waits
            if bucket is not None:
                _give_back(bucket)  # nothing is sent: the bucket keeps its token
            raise
        if quota.remaining is not None:
            quota.remaining -= 1
        quota.in_flight += 1
        self.waited += time.monotonic() - started
        return business_id, quota

    async def finish(
        self, lease: tuple[int, Quota], status: int | None, headers: Mapping[str, str] | None
    ) -> float:
        """Learn from the answer, free the slot; seconds until a spent quota resets."""
        business_id, quota = lease
        if status is not None and status >= 500:
            quota.refund()
        server = server_count(headers) if headers is not None else None
        if server is not None:
            remaining, reset_in = server
            quota.observe(remaining, time.time() + reset_in)
        quota.in_flight -= 1
        slot = self._slots.get(business_id)
        if slot is not None:
            slot.release()
        return quota.delay(time.time()) if quota.spent else 0.0

    def _slot(self, business_id: int) -> asyncio.Semaphore | None:
        if self._max_concurrency is None:
            return None
        slot = self._slots.get(business_id)
        if slot is None:
            slot = self._slots[business_id] = asyncio.Semaphore(self._max_concurrency)
        return slot


def server_count(headers: Mapping[str, str]) -> tuple[int, float] | None:
    """`-Remaining`, and the seconds until `-Until`, of an answer if it has them.

    The seconds are counted on the server's own clock (from its ``Date``
    header when there is one), so the caller can place the reset on whatever
    clock it keeps: its own, or Redis's ``TIME`` shared by every worker. Two
    clocks are never compared.
    """
    raw_remaining = headers.get("X-RateLimit-Resource-Remaining")
    if raw_remaining is None:
        return None
    raw_until = headers.get("X-RateLimit-Resource-Until")
    if raw_until is None:
        return None
    try:
        remaining = int(raw_remaining)
        until = _http_date(raw_until)
    except (TypeError, ValueError):
        return None  # a malformed header teaches nothing
    now = time.time()
    raw_date = headers.get("Date")
    if raw_date is not None:
        try:
            server_now = _http_date(raw_date)
        except (TypeError, ValueError):
            pass
        else:
            # Date has a resolution of one second: within that, our clock is
            # the finer measure of "now"; beyond it, the server's clock is off.
            if abs(server_now - now) > _SKEW_THRESHOLD:
                now = server_now
    return remaining, max(0.0, until - now)
