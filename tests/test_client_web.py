"""The client in a web service: max_wait, with_options views, logs, stats, hooks,
tracing, loop safety and 2xx answers that say ERROR. Against the fake on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import BUSINESS, FAST
from tests.virtual_clock import VirtualClock, with_fake_on_virtual_time
from yamarket_chats import (
    ApiError,
    ChatsClient,
    InvalidRequestError,
    RateLimit,
    RateLimitError,
    TransportError,
    YandexMarketError,
)
from yamarket_chats.errors import CLIENT_QUOTA_WAIT
from yamarket_chats.hooks import CallInfo, ClientHooks
from yamarket_chats.limits import Limits
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

YEAR = 365 * 86400.0


def one_business(**options: Any) -> FakeMarketConfig:
    return FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=2, **options)


async def spend_window(fake: FakeServer, path: str) -> None:
    """Play another process on the same cabinet: request until the fake says 420."""
    async with aiohttp.ClientSession(headers={"Api-Key": fake.api_key}) as http:
        while True:
            async with http.get(fake.url + path) as resp:
                if resp.status == 420:
                    return


def chat_path(fake: FakeServer) -> tuple[int, str]:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    return chat_id, f"/v2/businesses/{BUSINESS}/chat?chatId={chat_id}"


@contextlib.asynccontextmanager
async def slots_held(fake: FakeServer, chat_id: int, seconds: float) -> AsyncIterator[None]:
    """Another integration holds all 4 of the cabinet's parallel slots for `seconds`."""
    fake.faults.add("latency", delay=seconds, times=4)
    url = f"{fake.url}/v2/businesses/{BUSINESS}/chat?chatId={chat_id}"
    async with aiohttp.ClientSession(headers={"Api-Key": fake.api_key}) as other:

        async def one() -> None:
            async with other.get(url) as resp:
                await resp.read()

        tasks = [asyncio.create_task(one()) for _ in range(4)]
        await fake.wait_in_flight(BUSINESS, 4)
        yield
        await asyncio.gather(*tasks)


# -- max_wait -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fake", [one_business(quota_window=YEAR, quotas={"get_chat": 3})], indirect=True
)
async def test_spent_quota_beyond_max_wait_fails_at_once_with_retry_at(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, path = chat_path(fake)
    await spend_window(fake, path)
    client = make_client(max_wait=2)
    seen = len(fake.journal)
    started = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        await client.get_chat(BUSINESS, chat_id)  # the server's 420 names an -Until far away
    assert time.monotonic() - started < 0.5
    assert len(fake.journal) == seen + 1
    retry_at = info.value.retry_at
    assert retry_at is not None and retry_at.tzinfo is not None
    assert retry_at - dt.datetime.now(dt.timezone.utc) > dt.timedelta(seconds=60)
    assert info.value.errors and info.value.errors[0].code != CLIENT_QUOTA_WAIT

    # The client now knows: the next call fails before any request.
    started = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        await client.get_chat(BUSINESS, chat_id)
    assert time.monotonic() - started < 0.5
    assert len(fake.journal) == seen + 1
    assert info.value.status == 420 and isinstance(info.value, ApiError)
    assert [e.code for e in info.value.errors] == [CLIENT_QUOTA_WAIT]
    assert info.value.retry_at is not None and info.value.retry_at > retry_at - dt.timedelta(
        seconds=5
    )


async def test_persistent_parallel_420_gives_up_after_its_budget(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(max_retries=2, max_concurrency=None, max_wait=30)
    async with slots_held(fake, chat_id, 1.5):
        with pytest.raises(RateLimitError) as info:
            await client.get_chat(BUSINESS, chat_id)
        # 2 x max_retries 420s are retried: 1 + 4 requests in all
        assert [e.status for e in fake.journal if e.status is not None] == [420] * 5
    assert info.value.retry_at is None


async def test_persistent_parallel_420_stops_inside_max_wait(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    # real backoffs (0.5 s doubling) and a budget of 40 retries: max_wait decides
    client = make_client(
        max_retries=20, max_concurrency=None, max_wait=1.5, backoff=0.5, max_backoff=60
    )
    async with slots_held(fake, chat_id, 2.0):
        started = time.monotonic()
        with pytest.raises(RateLimitError):
            await client.get_chat(BUSINESS, chat_id)
        assert time.monotonic() - started <= 1.5


async def test_client_slots_busy_past_max_wait_is_a_client_quota_error(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(max_concurrency=1)
    fake.faults.add("latency", delay=1.0, times=1)
    busy = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
    await fake.wait_in_flight(BUSINESS, 1)
    started = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        await client.with_options(max_wait=0.3).get_chat(BUSINESS, chat_id)
    assert 0.25 < time.monotonic() - started < 1.0
    assert [e.code for e in info.value.errors] == [CLIENT_QUOTA_WAIT]
    assert info.value.retry_at is None
    assert len(fake.journal) == 1  # nothing was sent
    await busy


async def test_slow_server_and_retries_stay_inside_max_wait(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(timeout=0.4, max_retries=10, max_wait=1.5)
    fake.faults.add("latency", delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError):
        await client.get_chat(BUSINESS, chat_id)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 0.4, elapsed  # never past max_wait by more than one timeout
    assert len(fake.journal) >= 3


async def test_a_bucket_wait_never_overruns_max_wait(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # The estimate made before queueing on the bucket says 0.2 s; then other
    # callers barge in and take what frees up (aiolimiter lets a newcomer
    # take free capacity ahead of those queued): played here by filling the
    # bucket directly. The call gives up at its deadline instead of waiting ~2 s.
    chat_id, _ = chat_path(fake)
    client = make_client(max_wait=0.6, limits={"get_chat": RateLimit(1, 0.2, burst=1)})
    await client.get_chat(BUSINESS, chat_id)  # the bucket's one token
    # No caller of this process overtakes one queued (turns are kept in order),
    # so the barging comes from elsewhere: a request in flight learns that
    # other callers spent the server's window, while the call waits on the bucket.
    from email.utils import formatdate

    limiter = client._limits
    assert isinstance(limiter, Limits)
    in_flight = await limiter.acquire(BUSINESS, "get_chat")  # the bucket's next token
    started = time.monotonic()
    waiting = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
    turn = (BUSINESS, "get_chat")
    for _ in range(1000):  # until it waits on the bucket
        if limiter._method_gates.get(turn) is not None:
            break
        await asyncio.sleep(0.005)
    assert limiter._method_gates.get(turn) is not None
    # ten barging requests (elsewhere) spent the fake's window (an hour's):
    until = (time.time() // 3600 + 1) * 3600
    spent = {"X-RateLimit-Resource-Remaining": "0", "Date": formatdate(usegmt=True)}
    spent["X-RateLimit-Resource-Until"] = formatdate(until, usegmt=True)
    await limiter.finish(in_flight, 200, spent)
    with pytest.raises(RateLimitError) as info:
        await waiting
    assert time.monotonic() - started < 0.6 + 0.3
    assert [e.code for e in info.value.errors] == [CLIENT_QUOTA_WAIT]
    assert len(fake.journal) == 1  # nothing more was sent


async def test_backoff_that_would_pass_max_wait_raises_the_error_now(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(backoff=5.0, max_backoff=5.0, max_wait=1.0)
    fake.faults.add("status_503", times=1)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await client.get_chat(BUSINESS, chat_id)
    assert info.value.status == 503
    assert time.monotonic() - started < 0.5


def test_spent_quota_inside_max_wait_is_waited_out() -> None:
    async def body(fake: FakeServer, client: ChatsClient, loop: VirtualClock) -> None:
        chat_id, path = chat_path(fake)
        await spend_window(fake, path)
        window_end = (loop.time() // 30 + 1) * 30
        assert (await client.get_chat(BUSINESS, chat_id)).chat_id == chat_id
        assert loop.time() >= window_end  # waited for the window's end, inside max_wait

    config = one_business(quota_window=30.0, quotas={"get_chat": 3})
    with_fake_on_virtual_time(config, body, max_wait=45)


async def test_bad_options_are_refused(make_client: Callable[..., ChatsClient]) -> None:
    for bad in (0, -1, "5", True):
        with pytest.raises(InvalidRequestError, match="max_wait"):
            make_client(max_wait=bad)
    with pytest.raises(InvalidRequestError, match="keep_alive"):
        make_client(keep_alive="yes")
    client = make_client()
    with pytest.raises(InvalidRequestError, match="timeout"):
        client.with_options(timeout=0)
    with pytest.raises(InvalidRequestError, match="max_retries"):
        client.with_options(max_retries=-1)
    with pytest.raises(InvalidRequestError, match="max_wait"):
        client.with_options(max_wait=-2)


# -- views ----------------------------------------------------------------------


async def test_views_share_the_bucket_session_and_stats(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(limits={"get_chat": RateLimit(4, 3600, burst=4)})
    fast = client.with_options(max_wait=0.5, max_retries=0, timeout=5)
    patient = client.with_options(max_wait=None)
    assert fast._transport is client._transport is patient._transport
    for who in (client, fast, patient, fast):
        await who.get_chat(BUSINESS, chat_id)
    # The four requests of the hour's burst are spent, whichever view sent them.
    with pytest.raises(RateLimitError) as info:
        await fast.get_chat(BUSINESS, chat_id)
    assert [e.code for e in info.value.errors] == [CLIENT_QUOTA_WAIT]
    assert info.value.retry_at is not None
    assert len(fake.journal) == 4
    assert client.stats.requests == fast.stats.requests == 4
    async with client.with_options(timeout=3) as scoped:
        assert scoped.stats is client.stats
    await fast.close()
    with pytest.raises(RateLimitError):  # still usable: closing a view closed nothing
        await client.with_options(max_wait=0.2).get_chat(BUSINESS, chat_id)
    assert (
        client._transport.sessions._pooled is not None
        and not client._transport.sessions._pooled.closed
    )


async def test_a_view_keeps_the_parents_other_options(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(max_retries=0)
    view = client.with_options(timeout=5)
    fake.faults.add("status_503", times=1)
    with pytest.raises(ApiError):
        await view.get_chat(BUSINESS, chat_id)  # max_retries=0 still holds
    assert len(fake.journal) == 1


# -- logs, stats, hooks ---------------------------------------------------------


@pytest.mark.parametrize(
    "fake", [one_business(quota_window=YEAR, quotas={"get_chat": 3})], indirect=True
)
async def test_warnings_for_retries_and_420s_without_secrets(
    fake: FakeServer, make_client: Callable[..., ChatsClient], caplog: pytest.LogCaptureFixture
) -> None:
    chat_id, path = chat_path(fake)
    client = make_client(max_wait=2)
    caplog.set_level(logging.DEBUG, logger="yamarket_chats")
    fake.faults.add("status_500", times=1)
    await client.get_chat(BUSINESS, chat_id)
    await spend_window(fake, path)
    with pytest.raises(RateLimitError):
        await client.get_chat(BUSINESS, chat_id)
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
    lines = [r.getMessage() for r in warnings_]
    assert any("get_chat business=1001: HTTP 500; retry in" in line for line in lines), lines
    assert any("get_chat business=1001: 420, quota spent" in line for line in lines), lines
    assert all(r.name == "yamarket_chats" for r in warnings_)
    everything = " ".join(r.getMessage() for r in caplog.records)
    assert fake.api_key not in everything and fake.api_key.split(":")[-1] not in everything
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 3  # one per request


def test_a_long_wait_on_limits_is_a_warning_and_an_on_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waits: list[tuple[str, float]] = []

    class Waits(ClientHooks):
        async def on_wait(self, call: CallInfo, reason: str, seconds: float) -> None:
            waits.append((reason, seconds))

    async def body(fake: FakeServer, client: ChatsClient, loop: VirtualClock) -> None:
        chat_id, _ = chat_path(fake)
        caplog.set_level(logging.WARNING, logger="yamarket_chats")
        await client.get_chat(BUSINESS, chat_id)
        await client.get_chat(BUSINESS, chat_id)  # the bucket refills in 1.2 s
        assert [reason for reason, _ in waits] == ["limits"] and waits[0][1] >= 1.0
        lines = [r.getMessage() for r in caplog.records]
        assert any("get_chat business=1001: waited on limits; 1." in line for line in lines), lines
        assert client.stats.snapshot().operations[0].waited_seconds >= 1.0

    # On virtual time: on real time a timer that fires a hair early made it two waits.
    limits = {"get_chat": RateLimit(1, 1.2, burst=1)}
    with_fake_on_virtual_time(one_business(), body, limits=limits, hooks=Waits())


async def test_snapshot_per_business_and_method(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client()
    chat_id, _ = chat_path(fake)
    other_chat = fake.market.chats(2002)[0].chat_id
    fake.faults.add("status_500", times=1, operations={"get_chat"})
    await client.get_chat(BUSINESS, chat_id)
    await client.get_chat(2002, other_chat)
    await client.get_chat_history(BUSINESS, chat_id, limit=5)
    with pytest.raises(ApiError):
        await client.get_chat(BUSINESS, 999_999_999)  # 404
    snapshot = client.stats.snapshot()
    assert (snapshot.requests, snapshot.retries) == (5, 1)
    ops = {(o.business_id, o.method): o for o in snapshot.operations}
    assert set(ops) == {(BUSINESS, "get_chat"), (2002, "get_chat"), (BUSINESS, "get_chat_history")}
    mine = ops[BUSINESS, "get_chat"]
    assert (mine.calls, mine.failed_calls, mine.requests, mine.retries) == (2, 1, 3, 1)
    assert (mine.responses_2xx, mine.responses_4xx, mine.responses_5xx) == (1, 1, 1)
    assert mine.latency_count == 3 and mine.latency_seconds_max > 0
    assert mine.latency_seconds_mean is not None
    assert mine.server_remaining is not None and mine.server_until is not None
    assert mine.server_until.tzinfo is not None
    assert ops[2002, "get_chat"].requests == 1
    # the old totals keep working
    assert client.stats.requests == 5 and client.stats.rate_limited == 0


class Recorder(ClientHooks):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def on_start(self, call: CallInfo) -> None:
        self.events.append(("start", call.method))

    async def on_request(self, call: CallInfo) -> None:
        self.events.append(("request", call.attempts))

    async def on_response(
        self, call: CallInfo, status: int | None, seconds: float, error: BaseException | None
    ) -> None:
        self.events.append(("response", status))

    async def on_retry(self, call: CallInfo, reason: str, delay: float) -> None:
        self.events.append(("retry", reason))

    async def on_end(self, call: CallInfo) -> None:
        self.events.append(("end", call.attempts, call.status, type(call.error).__name__))


async def test_hooks_see_every_attempt_once(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    recorder = Recorder()
    client = make_client(hooks=[recorder])
    chat_id, _ = chat_path(fake)
    fake.faults.add("status_500", times=1)
    await client.get_chat(BUSINESS, chat_id)
    with pytest.raises(ApiError):
        await client.get_chat(BUSINESS, 999_999_999)
    assert recorder.events == [
        ("start", "get_chat"),
        ("request", 1),
        ("response", 500),
        ("retry", "HTTP 500"),
        ("request", 2),
        ("response", 200),
        ("end", 2, 200, "NoneType"),
        ("start", "get_chat"),
        ("request", 1),
        ("response", 404),
        ("end", 1, 404, "NotFoundError"),
    ]


async def test_hooks_that_cannot_be_called_are_refused(
    make_client: Callable[..., ChatsClient],
) -> None:
    class Sync(ClientHooks):
        def on_request(self, call: CallInfo) -> None:  # type: ignore[override]
            pass

    with pytest.raises(InvalidRequestError, match=r"Sync\.on_request must be an async def"):
        make_client(hooks=Sync())
    with pytest.raises(InvalidRequestError, match="hooks takes ClientHooks objects"):
        make_client(hooks=[print])
    assert make_client(hooks=ClientHooks())._transport.hooks is None  # nothing to call


async def test_opentelemetry_one_span_per_call(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from yamarket_chats.otel import TracingHooks

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = make_client(hooks=TracingHooks(tracer_provider=provider))
    chat_id, _ = chat_path(fake)
    fake.faults.add("status_503", times=2)
    await client.get_chat(BUSINESS, chat_id)
    with pytest.raises(ApiError):
        await client.get_chat(BUSINESS, 999_999_999)
    ok, failed = exporter.get_finished_spans()
    assert ok.name == "yamarket_chats get_chat"
    assert ok.attributes is not None and failed.attributes is not None
    assert ok.attributes["yamarket.method"] == "get_chat"
    assert ok.attributes["yamarket.business_id"] == BUSINESS
    assert ok.attributes["yamarket.attempts"] == 3
    assert ok.attributes["yamarket.rate_limited"] == 0
    assert ok.attributes["yamarket.waited_seconds"] > 0
    assert ok.attributes["http.response.status_code"] == 200
    assert [e.name for e in ok.events] == ["retry", "retry"]
    assert failed.attributes["http.response.status_code"] == 404
    assert not failed.status.is_ok


class SlowRequestHook(ClientHooks):
    def __init__(self) -> None:
        self.inside = asyncio.Event()

    async def on_request(self, call: CallInfo) -> None:
        self.inside.set()
        await asyncio.sleep(0.3)  # e.g. an async audit log


class FailingWaitHook(ClientHooks):
    async def on_wait(self, call: CallInfo, reason: str, seconds: float) -> None:
        raise RuntimeError("exporter down")


class FailingRequestHook(ClientHooks):
    async def on_request(self, call: CallInfo) -> None:
        raise RuntimeError("exporter down")


@pytest.mark.parametrize("fake", [one_business()], indirect=True)
@pytest.mark.parametrize("hook", ["slow_cancelled", "on_wait_raises", "on_request_raises"])
async def test_a_hook_that_awaits_or_raises_leaks_no_slot_and_no_token(
    fake: FakeServer, make_client: Callable[..., ChatsClient], hook: str
) -> None:
    chat_id, _ = chat_path(fake)
    hooks = {
        "slow_cancelled": SlowRequestHook(),
        "on_wait_raises": FailingWaitHook(),
        "on_request_raises": FailingRequestHook(),
    }[hook]
    limits = {"get_chat": RateLimit(1, 0.2, burst=1)}  # the next call waits, so on_wait runs
    client = make_client(max_concurrency=1, hooks=hooks, limits=limits)
    if hook == "on_wait_raises":
        await client.get_chat(BUSINESS, chat_id)  # takes the token: the next call waits
    task = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
    if isinstance(hooks, SlowRequestHook):
        await asyncio.wait_for(hooks.inside.wait(), 5)  # the slot and a token are taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(RuntimeError, match="exporter down"):
            await task
    limiter = client._limits
    assert isinstance(limiter, Limits)
    quota = limiter._store.lease(BUSINESS, "get_chat")
    assert quota.in_flight == 0
    assert quota.business.held == 0  # not locked: its one slot (max_concurrency=1) is free
    sent = len(fake.journal)
    assert quota.bucket is not None and quota.level() <= sent  # the token came back


@pytest.mark.parametrize("fake", [one_business()], indirect=True)
async def test_an_on_start_hook_that_raises_still_ends_the_call(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from yamarket_chats.otel import TracingHooks

    class FailingStart(ClientHooks):
        async def on_start(self, call: CallInfo) -> None:
            raise RuntimeError("hook bug")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = Recorder()
    client = make_client(hooks=[TracingHooks(tracer_provider=provider), FailingStart(), recorder])
    chat_id, _ = chat_path(fake)
    with pytest.raises(RuntimeError, match="hook bug"):
        await client.get_chat(BUSINESS, chat_id)
    assert recorder.events[-1] == ("end", 0, None, "RuntimeError")
    (span,) = exporter.get_finished_spans()  # ended, with the error
    assert not span.status.is_ok
    assert trace.get_current_span() is trace.INVALID_SPAN  # its context was detached
    assert fake.journal.entries() == []


@pytest.mark.parametrize("fake", [one_business()], indirect=True)
async def test_a_send_with_little_time_left_gets_its_full_timeout(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # The send waits for the only slot until ~0.5 s of its max_wait are left;
    # the server takes 1 s. Cut to the time left it would time out after the
    # server acted; it keeps its full timeout and succeeds.
    chat_id, _ = chat_path(fake)
    before = fake.market.message_count(BUSINESS, chat_id)
    client = make_client(max_concurrency=1)
    fake.faults.add("latency", delay=0.7, times=1, operations={"get_chat"})
    busy = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
    await fake.wait_in_flight(BUSINESS, 1)
    fake.faults.add("latency", delay=1.0, times=1, operations={"send_message_to_chat"})
    await client.with_options(max_wait=1.2).send_message_to_chat(BUSINESS, chat_id, "hello")
    await busy
    assert fake.market.message_count(BUSINESS, chat_id) == before + 1


@pytest.mark.parametrize("fake", [one_business()], indirect=True)
async def test_a_send_past_its_deadline_before_it_goes_out_is_not_sent(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(hooks=SlowRequestHook(), max_wait=0.2)
    with pytest.raises(TransportError, match="nothing was sent"):
        await client.send_message_to_chat(BUSINESS, chat_id, "hello")
    assert fake.journal.entries() == []
    assert client.stats.requests == 0


async def test_no_secret_in_the_chained_cause_of_a_transport_error() -> None:
    # aiohttp's ClientResponseError keeps the request's headers in request_info.
    async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    secret = "SECRET-KEY-123"
    try:
        async with ChatsClient(
            api_key=secret, base_url=f"http://127.0.0.1:{port}", max_retries=0
        ) as client:
            with pytest.raises(TransportError) as info:
                await client.get_chat(BUSINESS, 1)
    finally:
        server.close()
    exc = info.value
    assert isinstance(exc.__cause__, aiohttp.ClientResponseError)
    for text in (
        str(exc),
        repr(exc.__cause__),
        repr(exc.__context__),
        "".join(traceback.format_exception(exc)),
        str(exc.__cause__.request_info),
    ):
        assert secret not in text


@pytest.mark.parametrize("fake", [one_business()], indirect=True)
async def test_a_held_stats_object_stays_current(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    chat_id, _ = chat_path(fake)
    client = make_client(limits={"get_chat": RateLimit(1, 0.3, burst=1)})
    stats = client.stats  # e.g. held by a Prometheus collector
    before = dataclasses.replace(stats)  # a copy keeps its reading
    for _ in range(3):
        await client.get_chat(BUSINESS, chat_id)
    assert stats.waited_seconds >= 0.4
    assert stats.snapshot().waited_seconds == pytest.approx(stats.waited_seconds)
    assert before.waited_seconds == 0.0


# -- loop safety ------------------------------------------------------------------


def test_a_client_used_from_a_second_loop_says_so() -> None:
    config = FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=1)
    client = ChatsClient(api_key="ACMA:fake-api-key", base_url="http://127.0.0.1:9", **FAST)

    async def first() -> int:
        async with run_fake_server(config) as fake:
            client._transport._base = fake.url + "/v2/businesses/"  # point it at this fake
            chat_id = fake.market.chats(BUSINESS)[0].chat_id
            await client.get_chat(BUSINESS, chat_id)  # made outside any loop: binds here
            await client.close()  # (else its sockets would outlive this loop)
            return chat_id

    chat_id = asyncio.run(first())

    async def second() -> None:
        with pytest.raises(YandexMarketError, match="one client per loop"):
            await client.get_chat(BUSINESS, chat_id)
        await client.close()  # idempotent, and nothing to await on the dead loop

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        asyncio.run(second())


# -- 2xx answers that say ERROR ---------------------------------------------------


@pytest.fixture
async def error_server() -> AsyncIterator[str]:
    """A server whose every answer is 200 with ``"status": "ERROR"``."""

    async def refuse(request: web.Request) -> web.Response:
        body = b'{"status":"ERROR","errors":[{"code":"CHAT_CLOSED","message":"closed"}]}'
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/v2/businesses/{b}/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_2xx_that_says_error_raises_api_error(error_server: str) -> None:
    async with ChatsClient(api_key="k", base_url=error_server, **FAST) as client:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.get_chat(BUSINESS, 1),
            lambda: client.send_message_to_chat(BUSINESS, 1, "hi"),
            lambda: client.send_file_to_chat(BUSINESS, 1, b"x", filename="a.txt"),
        ]
        for call in calls:  # each coroutine made only when awaited
            with pytest.raises(ApiError) as info:
                await call()
            assert info.value.status == 200
            assert [(e.code, e.message) for e in info.value.errors] == [("CHAT_CLOSED", "closed")]
        assert client.stats.requests == 3  # a definite answer: never retried


@pytest.mark.parametrize("fake", [one_business()], indirect=True)
async def test_hooks_see_each_attempts_outcome_and_the_answers_headers(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # The built-in stats count 420s by kind from the same CallInfo.outcome.
    seen: list[tuple[int | None, str | None, str | None]] = []

    class Outcomes(ClientHooks):
        async def on_response(
            self, call: CallInfo, status: int | None, seconds: float, error: BaseException | None
        ) -> None:
            remaining = (
                None if call.headers is None else call.headers.get("X-RateLimit-Resource-Remaining")
            )
            seen.append((status, call.outcome, remaining))

    chat_id, _ = chat_path(fake)
    client = make_client(hooks=Outcomes())
    fake.faults.add("status_503", times=1)
    await client.get_chat(BUSINESS, chat_id)
    assert [(status, outcome) for status, outcome, _ in seen] == [(503, "5xx"), (200, "ok")]
    remaining = [r for _, _, r in seen]
    assert all(r is not None and int(r) >= 0 for r in remaining), remaining
    [call_stats] = client.stats.snapshot().operations
    assert call_stats.server_remaining == int(remaining[-1] or "")
