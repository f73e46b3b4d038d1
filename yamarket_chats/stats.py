"""Counters of what a client did, per business id and method, as plain data.

The request loop bumps a few integers per request (no locks: one event loop);
:meth:`ClientStats.snapshot` copies them into frozen dataclasses that a
health endpoint can serialise or a Prometheus collector can read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["ClientStats", "OperationStats", "StatsSnapshot"]


@dataclass(frozen=True, slots=True)
class OperationStats:
    """What one client did for one (business id, method) since it was made."""

    business_id: int
    method: str
    calls: int  #: operations started (a page of a walk is one)
    failed_calls: int  #: operations that raised (cancellations not counted)
    requests: int  #: HTTP requests sent, retries included
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

    def answered(self, status: int, seconds: float, headers: Any) -> None:
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
        remaining = headers.get("X-RateLimit-Resource-Remaining")
        if remaining is not None:
            self.server_remaining = remaining
            self.server_until = headers.get("X-RateLimit-Resource-Until")

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


class _LiveWaited:
    """`ClientStats.waited_seconds`: the limiter's live figure on a client's own stats.

    A copy (``dataclasses.replace(client.stats)``) keeps the value read when
    it was made, so two readings can be subtracted.
    """

    def __get__(self, obj: ClientStats | None, owner: type[Any] | None = None) -> float:
        if obj is None:
            return 0.0  # the dataclass field's default
        read = obj._read_waited
        return read() if read is not None else obj._waited

    def __set__(self, obj: ClientStats, value: float) -> None:
        obj._waited = value


@dataclass
class ClientStats:
    """Counters of one client and its views, for progress displays and metrics.

    The four fields are totals; :meth:`snapshot` adds the same per business
    id and method, with status classes, latency and the server's last count.
    The object ``client.stats`` returns stays current: hold it (e.g. in a
    Prometheus collector) and read it whenever you like.
    """

    requests: int = 0  #: HTTP requests sent, retries included
    retries: int = 0  #: requests sent again after a failure or a 420
    rate_limited: int = 0  #: 420 answers received
    #: time spent waiting on client-side limits (all tasks)
    waited_seconds: _LiveWaited = _LiveWaited()
    _by_key: dict[tuple[int, str], _Counters] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Set by the client on its own stats: reads the limiter's running total.
    _read_waited: Callable[[], float] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _waited: float = field(default=0.0, init=False, repr=False, compare=False)

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
