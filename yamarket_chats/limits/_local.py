"""In-process quotas: the reference model of every limit rule, and `Limits`.

This store says, in plain Python, what each rule is; the Redis store runs the
same rules in Lua (``quota.lua`` mirrors this file function by function), and
``tests/test_limits_differential.py`` drives both with the same random
histories of requests, answers and clock moves, expecting the same answers.
Change a rule here, change it there.

Per (business id, method) a request needs, all at once or not at all:

1. **the server's window**: the count the server last reported
   (``X-RateLimit-Resource-Remaining``, less the requests in flight, which it
   may not have counted yet) until its reset; at zero, requests wait for the
   reset instead of running into a 420;
2. **a bucket token**: an aiolimiter bucket spreads requests at the
   configured rate with a small burst (used through its public API only);
3. **a parallel slot** of the business (the API answers 420 beyond 4).

A 5xx answer, or a request that never went out, gives back its place in the
server's count and its token. Every moment is the event loop's ``time()``
(aiolimiter's clock too); the server's reset enters as seconds from now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Final, Protocol

from aiolimiter import AsyncLimiter

from ._engine import BUCKET, GO_AHEAD, SLOT, WINDOW, Answer, Engine
from ._rate import RateLimit

__all__ = ["FORGET_AFTER", "WINDOW_TOLERANCE", "Limits", "LocalStore"]

#: Answers whose reset is this close to the known one (seconds) are of the
#: same window: the server's -Until has a resolution of one second.
WINDOW_TOLERANCE: Final = 0.5
#: A window is forgotten this long after its reset (a spent one at its reset).
#: No answer depends on it (past its reset a window holds nothing back, and
#: any count the server sends then starts a new one): it is the model of the
#: Redis key's expiry, so that both stores hold the same state.
FORGET_AFTER: Final = 5.0

_SLOT_UNKNOWN: Final[Answer] = (SLOT, None)
_BISECTIONS: Final = 64  # enough halvings to find a bucket's level to a float's precision


class _Business:
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = 0  # parallel slots taken


class _Quota:
    """One (business id, method): the lease of each of its requests, too."""

    __slots__ = (
        "bucket",
        "business",
        "credit",
        "in_flight",
        "key",
        "remaining",
        "reset_at",
        "slots",
    )

    def __init__(self, key: tuple[int, str], business: _Business, limit: RateLimit | None) -> None:
        self.key = key
        self.slots = key[0]
        self.business = business
        self.bucket = limit.new_limiter() if limit is not None else None
        # Refunds the bucket owes: its effective level is max(0, level - credit).
        self.credit = 0
        self.remaining: int | None = None  # the server's count, None when unknown
        self.reset_at = 0.0  # loop time its window resets
        self.in_flight = 0

    def level(self) -> float:
        """Tokens' worth the bucket holds now: its level less the refunds owed."""
        if self.bucket is None:
            return 0.0
        return max(0.0, _fill(self.bucket) - self.credit)


class LocalStore:
    """The quotas of one process (see the module's docstring for the rules)."""

    may_miss_wakeups = False  # every slot is freed by a finish in this process

    def __init__(self, limits: Mapping[str, RateLimit | None], cap: int | None) -> None:
        self._limits = dict(limits)
        self._cap = cap or 0
        self._quotas: dict[tuple[int, str], _Quota] = {}
        self._businesses: dict[int, _Business] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _now(self) -> float:
        """The running loop's time (aiolimiter's clock), without looking the loop up each time."""
        loop = self._loop
        if loop is None or loop.is_closed():  # first use, or reused in a new loop
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def lease(self, business_id: int, method: str) -> _Quota:
        """The (business, method) record; a request's lease is its quota."""
        key = (business_id, method)
        quota = self._quotas.get(key)
        if quota is None:
            business = self._businesses.get(business_id)
            if business is None:
                business = self._businesses[business_id] = _Business()
            quota = self._quotas[key] = _Quota(key, business, self._limits.get(method))
        return quota

    async def watch(self, slots: object) -> bool:
        """Slots are freed only here, and every finish wakes the waiter."""
        return True

    def take(self, quota: _Quota) -> Answer | Awaitable[Answer]:
        """Window, bucket, slot: take all three, or none and say which is missing.

        With a bucket, the answer is awaitable: the bucket's ``acquire()``,
        which has the capacity, so it completes as it is awaited.
        """
        remaining = quota.remaining
        if remaining is not None and remaining <= 0:
            seconds = _spent(quota, self._now())
            if seconds:
                return WINDOW, seconds
            quota.remaining = None  # the window is over: the server counts afresh
        bucket = quota.bucket
        if bucket is not None and not bucket.has_capacity(1 - quota.credit):
            return BUCKET, _bucket_wait(bucket, quota.credit)
        business = quota.business
        if self._cap and business.held >= self._cap:
            return _SLOT_UNKNOWN  # these leases never expire: a finish frees one
        if quota.remaining is not None:
            quota.remaining -= 1
        quota.in_flight += 1
        business.held += 1
        if bucket is not None:
            if quota.credit:
                bucket = _spend_credit(quota, bucket)
            if bucket is not None:
                return _go_after(bucket.acquire())
        return GO_AHEAD

    def finish(self, quota: _Quota, status: int | None, server: tuple[int, float] | None) -> float:
        """Give back the slot (and for a 5xx what was taken); learn the server's count."""
        quota.in_flight -= 1
        now = 0.0
        if quota.remaining is not None or server is not None:  # else no clock is needed
            now = self._now()
            _forget_over(quota, now)
        if status is not None and status >= 500:
            _refund(quota)
        if server is not None:
            _observe(quota, server[0], server[1], now)
        quota.business.held -= 1
        return _spent(quota, now)

    def observe(self, business_id: int, method: str, remaining: int, reset_in: float) -> None:
        """Take in a server's count learned without a request of this store's.

        The same rules as a count an answer carries (`finish`); the Redis
        store seeds its fallback this way with what the worker knew.
        """
        quota = self.lease(business_id, method)
        now = self._now()
        _forget_over(quota, now)
        _observe(quota, remaining, reset_in, now)


def _spent(quota: _Quota, now: float) -> float:
    """Seconds until the server's spent window resets (0: not spent)."""
    remaining = quota.remaining
    if remaining is None or remaining > 0 or now >= quota.reset_at:
        return 0.0
    return quota.reset_at - now


class _Count(Protocol):
    """What `_forget_over` and `_observe` keep: the server's count, its reset, the requests out.

    A `_Quota` here; in the Redis store, what one worker knows of the count.
    """

    remaining: int | None
    reset_at: float
    in_flight: int


def _forget_over(quota: _Count, now: float) -> None:
    """Forget a window that is over: spent and reset, or reset `FORGET_AFTER` ago."""
    remaining = quota.remaining
    if remaining is None:
        return
    if now >= quota.reset_at + FORGET_AFTER or (remaining <= 0 and now >= quota.reset_at):
        quota.remaining = None


def _observe(quota: _Count, remaining: int, reset_in: float, now: float) -> None:
    """Take in the server's count from an answer to one of our requests.

    The server's count is a ceiling over the bucket: when it knows less
    quota than the bucket (a lower limit, another process on the same
    cabinet, a restart), requests stop at zero until its window resets.
    """
    # Requests still in flight may or may not be in the server's count;
    # assume they are not, so the estimate can only err on the safe side.
    estimate = remaining - quota.in_flight
    reset_at = now + reset_in
    if quota.remaining is None or reset_at > quota.reset_at + WINDOW_TOLERANCE:
        quota.remaining, quota.reset_at = estimate, reset_at  # a new window
    elif reset_at > quota.reset_at - WINDOW_TOLERANCE and estimate < quota.remaining:
        quota.remaining = estimate
    # else: a late answer from a window already over; nothing to learn


def _refund(quota: _Quota) -> None:
    """The server does not count a 5xx (nor a request it never saw): give it back."""
    if quota.remaining is not None:
        quota.remaining += 1
    if quota.bucket is not None:
        quota.credit += 1


def _spend_credit(quota: _Quota, bucket: AsyncLimiter) -> AsyncLimiter | None:
    """With refunds owed: the bucket to take the token from, or None (a refund is spent)."""
    credit = quota.credit
    if bucket.has_capacity(bucket.max_rate - credit):
        # level <= credit: the bucket drained below what it owed, so it is
        # empty in effect; a fresh one, given this token, says so exactly.
        quota.credit = 0
        quota.bucket = bucket = AsyncLimiter(bucket.max_rate, bucket.time_period)
        return bucket
    quota.credit = credit - 1  # a refunded token is spent again
    return None


async def _go_after(acquiring: Awaitable[None]) -> Answer:
    await acquiring
    return GO_AHEAD


def _bucket_wait(bucket: AsyncLimiter, credit: int) -> float:
    """Seconds until ``has_capacity(1 - credit)``: the effective level drains to max - 1."""
    excess = _fill(bucket) - credit + 1 - bucket.max_rate
    return excess / (bucket.max_rate / bucket.time_period)


def _fill(bucket: AsyncLimiter) -> float:
    """The bucket's level, found by bisection: ``has_capacity(a)`` is ``level + a <= max``."""
    top = bucket.max_rate
    if bucket.has_capacity(top):
        return 0.0
    low, high = 0.0, float(top)  # has_capacity(top - high) holds, (top - low) does not
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if bucket.has_capacity(top - middle):
            high = middle
        else:
            low = middle
    return high


class Limits(Engine[_Quota]):
    """The quotas of one client in its own process: the engine over `LocalStore`.

    :param limits: a `RateLimit` (or ``None``: no bucket) per method name.
    :param max_concurrency: requests in flight per business id (``None``: no cap).
    """

    def __init__(self, limits: Mapping[str, RateLimit | None], max_concurrency: int | None) -> None:
        super().__init__(LocalStore(limits, max_concurrency))
