"""Counters of what a client did, per business id and method, as plain data.

The counters are a built-in hook (`StatsHooks`) on the same events users'
hooks see, told first: a few integers bumped per request (no locks: one event
loop). :meth:`ClientStats.snapshot` copies them into frozen dataclasses that a
health endpoint can serialise or a Prometheus collector can read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ._transport.retry import Kind
from .errors import YandexMarketError
from .hooks import CallInfo
from .limits._headers import REMAINING, UNTIL

__all__ = ["ClientStats", "OperationStats", "StatsSnapshot"]


@dataclass(frozen=True, slots=True)
class OperationStats:
    """What one client did for one (business id, method) since it was made."""

    business_id: int
    method: str
    calls: int  #: operations started (a page of a walk is one)
    failed_calls: int  #: operations that raised (cancellations not counted)
    requests: int  #: HTTP requests sent (counted as they end), retries included
    retries: int  #: requests sent again after a failure or a 420
    responses_2xx: int
    responses_4xx: int  #: 420s included
    responses_5xx: int
    transport_errors: int  #: no answer: timeouts, dropped connections
    rate_limited_quota: int  #: 420s with the quota spent (waited until ``-Until``)
    rate_limited_parallel: int  #: 420s with quota left (the parallel cap) or no count
    waited_seconds: float  #: time spent waiting on client-side limits
    backoff_seconds: float  #: time spent sleeping before retries
    latency_count: int  #: answered requests timed (transport errors excluded)
    latency_seconds_sum: float
    latency_seconds_max: float
    server_remaining: int | None  #: the last ``X-RateLimit-Resource-Remaining`` seen
    server_until: dt.datetime | None  #: the last ``-Until`` seen (aware)

    @property
    def latency_seconds_mean(self) -> float | None:
        """Mean time of an answered request, or ``None`` before any."""
        return self.latency_seconds_sum / self.latency_count if self.latency_count else None


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Totals and per-(business, method) counters at one moment."""

    requests: int
    retries: int
    rate_limited: int
    waited_seconds: float
    operations: tuple[OperationStats, ...]


class _Counters:
    """The mutable counters behind one `OperationStats` (bumped by the request loop)."""

    __slots__ = (
        "backoff_seconds",
        "calls",
        "failed_calls",
        "latency_count",
        "latency_max",
        "latency_sum",
        "parallel_420",
        "quota_420",
        "requests",
        "retries",
        "s2xx",
        "s4xx",
        "s5xx",
        "server_remaining",
        "server_until",
        "transport_errors",
        "waited_seconds",
    )

    def __init__(self) -> None:
        self.calls = self.failed_calls = self.requests = self.retries = 0
        self.s2xx = self.s4xx = self.s5xx = self.transport_errors = 0
        self.quota_420 = self.parallel_420 = self.latency_count = 0
        self.waited_seconds = self.backoff_seconds = 0.0
        self.latency_sum = self.latency_max = 0.0
        self.server_remaining: str | None = None  # raw header values, parsed on snapshot
        self.server_until: str | None = None

    def answered(self, status: int, seconds: float, headers: Mapping[str, str] | None) -> None:
        """Count an answer: its status class, its time, the server's count."""
        if status < 300:
            self.s2xx += 1
        elif status < 500:
            self.s4xx += 1
        else:
            self.s5xx += 1
        self.latency_count += 1
        self.latency_sum += seconds
        if seconds > self.latency_max:
            self.latency_max = seconds
        if headers is not None and (remaining := headers.get(REMAINING)) is not None:
            self.server_remaining = remaining
            self.server_until = headers.get(UNTIL)

    def freeze(self, business_id: int, method: str) -> OperationStats:
        remaining: int | None = None
        until: dt.datetime | None = None
        try:
            remaining = int(self.server_remaining) if self.server_remaining else None
            until = parsedate_to_datetime(self.server_until) if self.server_until else None
        except (TypeError, ValueError):
            pass  # a malformed header: report what could be read
        return OperationStats(
            business_id=business_id,
            method=method,
            calls=self.calls,
            failed_calls=self.failed_calls,
            requests=self.requests,
            retries=self.retries,
            responses_2xx=self.s2xx,
            responses_4xx=self.s4xx,
            responses_5xx=self.s5xx,
            transport_errors=self.transport_errors,
            rate_limited_quota=self.quota_420,
            rate_limited_parallel=self.parallel_420,
            waited_seconds=self.waited_seconds,
            backoff_seconds=self.backoff_seconds,
            latency_count=self.latency_count,
            latency_seconds_sum=self.latency_sum,
            latency_seconds_max=self.latency_max,
            server_remaining=remaining,
            server_until=until,
        )


@dataclass
class ClientStats:
    """Counters of one client and its views, for progress displays and metrics.

    The four fields are totals; :meth:`snapshot` adds the same per business
    id and method, with status classes, latency and the server's last count.
    The object ``client.stats`` returns stays current: hold it (e.g. in a
    Prometheus collector) and read it whenever you like.
    """

    requests: int = 0  #: HTTP requests sent (counted as they end), retries included
    retries: int = 0  #: requests sent again after a failure or a 420
    rate_limited: int = 0  #: 420 answers received
    waited_seconds: float = 0.0  #: time spent waiting on client-side limits (summed over tasks)
    _by_key: dict[tuple[int, str], _Counters] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _counters(self, business_id: int, method: str) -> _Counters:
        key = (business_id, method)
        counters = self._by_key.get(key)
        if counters is None:
            counters = self._by_key[key] = _Counters()
        return counters

    def snapshot(self) -> StatsSnapshot:
        """A copy of every counter, as frozen dataclasses (cheap; call it often)."""
        return StatsSnapshot(
            requests=self.requests,
            retries=self.retries,
            rate_limited=self.rate_limited,
            waited_seconds=self.waited_seconds,
            operations=tuple(c.freeze(b, m) for (b, m), c in sorted(self._by_key.items())),
        )


class StatsHooks:
    """The built-in hook that keeps a `ClientStats` current.

    The same events, with the same arguments, as `ClientHooks`, told before
    the user's hooks; plain methods rather than coroutines, since counting
    never waits (a client without hooks of its own pays no coroutine per event).
    """

    __slots__ = ("stats",)

    def __init__(self, stats: ClientStats) -> None:
        self.stats = stats

    def on_start(self, call: CallInfo) -> None:
        """Count the call, and find its counters once."""
        counters = call._counters = self.stats._counters(call.business_id, call.method)
        counters.calls += 1

    def on_wait(self, call: CallInfo, reason: str, seconds: float) -> None:
        """Add a wait on limits."""
        call._counters.waited_seconds += seconds
        self.stats.waited_seconds += seconds

    def on_response(
        self, call: CallInfo, status: int | None, seconds: float, error: BaseException | None
    ) -> None:
        """Count a request that went out, and its answer (status, time, the server's count)."""
        stats, counters = self.stats, call._counters
        stats.requests += 1
        counters.requests += 1
        if call.attempts > 1:
            stats.retries += 1
            counters.retries += 1
        if status is None:
            counters.transport_errors += 1
            return
        counters.answered(status, seconds, call.headers)
        if status == 420:
            stats.rate_limited += 1
            if call.outcome == Kind.QUOTA_SPENT:  # a 420 that waits for -Until
                counters.quota_420 += 1
            else:
                counters.parallel_420 += 1

    def on_retry(self, call: CallInfo, reason: str, delay: float) -> None:
        """Add a backoff."""
        call._counters.backoff_seconds += delay

    def on_end(self, call: CallInfo) -> None:
        """Count a call that raised (a cancellation is no failure)."""
        if isinstance(call.error, YandexMarketError):
            call._counters.failed_calls += 1
