"""`ChatsCollector`: the ``yamarket_chats_*`` families, read from the counters at each scrape.

A custom collector rather than prometheus-client's ``Counter`` objects: the
client already keeps its counters (``client.stats``) for every user, so the
request path pays nothing more when metrics are on, and nothing at all when
they are off; a scrape copies them once (`ClientStats.snapshot`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .._extras import missing_extra

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
except ModuleNotFoundError as error:
    raise missing_extra(error, "metrics", __name__) from None

from ..client import ChatsClient
from ..stats import OperationStats
from ._syncs import BusinessSyncStats, SyncMetrics

__all__ = ["ChatsCollector", "FrozenMetrics"]

_BY_METHOD = ["business_id", "method"]
_BY_BUSINESS = ["business_id"]

# (name, help, the counter of OperationStats): one family each, by business and method.
_OPERATION_COUNTERS = (
    ("calls", "Operations started (a page of a walk is one)", "calls"),
    ("call_errors", "Operations that raised an error (cancellations not counted)", "failed_calls"),
    ("requests", "HTTP requests sent, retries included", "requests"),
    ("retries", "Requests sent again after a failure or a 420", "retries"),
    (
        "transport_errors",
        "Requests that got no answer (timeouts, dropped connections)",
        "transport_errors",
    ),
    ("wait_seconds", "Seconds spent waiting on client-side limits", "waited_seconds"),
    ("backoff_seconds", "Seconds spent sleeping before retries", "backoff_seconds"),
)


class ChatsCollector:
    """A prometheus-client collector of a client's counters and, optionally, its syncs'.

    :param client: its ``stats`` are read (views count into their client's).
    :param syncs: per-business sync counters (`SyncMetrics`), when syncs run.

    Families, each named ``yamarket_chats_*`` and labelled ``business_id``
    (and ``method`` for the client's): see docs/fleet.md.
    """

    def __init__(self, client: ChatsClient, syncs: SyncMetrics | None = None) -> None:
        self._client = client
        self._syncs = syncs

    def describe(self) -> list[Metric]:
        """The families, without samples: a registry refuses a second collector of the same
        names (two on one registry would make a scrape Prometheus rejects)."""
        return list(FrozenMetrics((), (), None if self._syncs is None else 0).collect())

    def collect(self) -> Iterator[Metric]:
        """The families, as of now."""
        return self.freeze().collect()

    def freeze(self) -> FrozenMetrics:
        """The counters as of now, to turn into families later, on any thread.

        A scrape of thousands of businesses takes prometheus-client a good
        fraction of a second to format: take the copy on the event loop (a
        few microseconds per business and method), then format it elsewhere
        (``asyncio.to_thread(generate_latest, frozen)``), so the loop keeps
        turning meanwhile.
        """
        operations = self._client.stats.snapshot().operations
        if self._syncs is None:
            return FrozenMetrics(operations, (), None)
        return FrozenMetrics(operations, self._syncs.snapshot(), self._syncs.leases_held)


class FrozenMetrics:
    """The families of `ChatsCollector.freeze`: a collector of values that no longer move."""

    def __init__(
        self,
        operations: Sequence[OperationStats],
        businesses: Sequence[BusinessSyncStats],
        leases: int | None,
    ) -> None:
        self._operations, self._businesses, self._leases = operations, businesses, leases

    def collect(self) -> Iterator[Metric]:
        """The families."""
        yield from _operation_families(self._operations)
        if self._leases is not None:
            yield from _sync_families(self._businesses, self._leases)


def _family(name: str, text: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(f"yamarket_chats_{name}", text, labels=labels)


def _operation_families(operations: Sequence[OperationStats]) -> Iterator[Metric]:
    counters = [
        (_family(name, text, _BY_METHOD), field) for name, text, field in _OPERATION_COUNTERS
    ]
    responses = _family("responses", "Answers by status class", [*_BY_METHOD, "status_class"])
    limited = _family(
        "rate_limited",
        "420 answers, by kind: quota (spent, waited for its reset) or parallel (the cap)",
        [*_BY_METHOD, "kind"],
    )
    latency = SummaryMetricFamily(
        "yamarket_chats_request_seconds", "Time of answered requests", labels=_BY_METHOD
    )
    remaining = GaugeMetricFamily(
        "yamarket_chats_server_remaining",
        "The quota left, as the last answer's X-RateLimit-Resource-Remaining said",
        labels=_BY_METHOD,
    )
    for op in operations:
        key = [str(op.business_id), op.method]
        for family, field in counters:
            family.add_metric(key, getattr(op, field))
        for status_class, count in (
            ("2xx", op.responses_2xx),
            ("4xx", op.responses_4xx),
            ("5xx", op.responses_5xx),
        ):
            responses.add_metric([*key, status_class], count)
        limited.add_metric([*key, "quota"], op.rate_limited_quota)
        limited.add_metric([*key, "parallel"], op.rate_limited_parallel)
        latency.add_metric(key, op.latency_count, op.latency_seconds_sum)
        if op.server_remaining is not None:
            remaining.add_metric(key, op.server_remaining)
    yield from (family for family, _ in counters)
    yield from (responses, limited, latency, remaining)


def _sync_families(businesses: Sequence[BusinessSyncStats], leases: int) -> Iterator[Metric]:
    messages = _family("messages_stored", "New messages stored by syncs", _BY_BUSINESS)
    pages = _family("pages_stored", "History pages stored by syncs", _BY_BUSINESS)
    completed = _family("syncs_completed", "Syncs that completed", _BY_BUSINESS)
    failed = _family("syncs_failed", "Syncs that failed", _BY_BUSINESS)
    lost = _family(
        "leases_lost", "Syncs stopped because another holder took the business over", _BY_BUSINESS
    )
    running = GaugeMetricFamily(
        "yamarket_chats_syncs_running", "Syncs in progress", labels=_BY_BUSINESS
    )
    lag = GaugeMetricFamily(
        "yamarket_chats_sync_lag_seconds",
        "Seconds since the business's last completed sync (or since the process began"
        " watching it, before any)",
        labels=_BY_BUSINESS,
    )
    last = GaugeMetricFamily(
        "yamarket_chats_last_sync_timestamp_seconds",
        "Unix time the business's last completed sync ended",
        labels=_BY_BUSINESS,
    )
    for b in businesses:
        key = [str(b.business_id)]
        messages.add_metric(key, b.messages)
        pages.add_metric(key, b.pages)
        completed.add_metric(key, b.completed)
        failed.add_metric(key, b.failed)
        lost.add_metric(key, b.lost)
        running.add_metric(key, b.running)
        lag.add_metric(key, b.lag_seconds)
        if b.last_success is not None:
            last.add_metric(key, b.last_success)
    held = GaugeMetricFamily(
        "yamarket_chats_leases_held", "Businesses this process syncs under a lease", value=leases
    )
    yield from (messages, pages, completed, failed, lost, running, lag, last, held)
