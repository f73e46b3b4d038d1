"""Forged and hostile notifications: secret, allow-list, limits, busy callbacks, the fetch cap."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import secrets
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from yamarket_chats import ChatsClient, InvalidRequestError, RateLimit
from yamarket_chats.notifications import (
    MAX_BODY_BYTES,
    ChatCreatedNotification,
    ChatMessageSentNotification,
    FetchLimitError,
    MemorySeenStore,
    Notification,
    NotificationFetcher,
    NotificationFormatError,
    NotificationReceiver,
    add_notification_route,
    allow_networks,
    decode_notification,
    dedup_key,
)
from yamarket_chats.testing import FakeServer

from .conftest import BUSINESS
from .test_notifications import NAME, VERSION, Inbox, serve

SECRET = secrets.token_urlsafe(24)


def message_body(message_id: int | str, business: int = BUSINESS, chat: int = 77) -> bytes:
    return json.dumps(
        {
            "notificationType": "CHAT_MESSAGE_SENT",
            "businessId": business,
            "chatId": chat,
            "messageId": str(message_id),
            "sentAt": "2025-03-01T12:00:00+03:00",
        }
    ).encode()


class CountingStore(MemorySeenStore):
    """A seen-set that counts every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def add(self, key: str) -> bool:
        self.calls += 1
        return await super().add(key)

    async def discard(self, key: str) -> None:
        self.calls += 1
        await super().discard(key)


@asynccontextmanager
async def app_with(path: str, callback: Any, **options: Any) -> AsyncIterator[tuple[str, Any]]:
    app = web.Application()
    receiver = add_notification_route(app, path, callback, name=NAME, version=VERSION, **options)
    async with serve(app) as base:
        yield base, receiver


async def post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    data = io.BytesIO(body)  # with a Content-Length, and no warning for large bodies
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=sent) as r:
        assert r.content_type == "application/json"
        return r.status, json.loads(await r.read())


# -- keeping strangers out ------------------------------------------------------------


async def test_a_wrong_secret_in_the_path_is_403_without_callback_or_seen_set() -> None:
    inbox, store = Inbox(), CountingStore()
    path = "/market/{secret}/notification"
    async with app_with(path, inbox, secret=SECRET, seen=store) as (base, receiver):
        for wrong in ("x" * len(SECRET), SECRET[:-1], SECRET + "a", "%00"):
            status, answer = await post(f"{base}/market/{wrong}/notification", message_body(1))
            assert (status, answer["error"]["type"]) == (403, "UNKNOWN")
        assert store.calls == 0 and receiver.pending == 0 and inbox.events == []
        assert receiver.counts["forbidden"] == 4
        status, _ = await post(f"{base}/market/{SECRET}/notification", message_body(1))
        assert status == 200
        await inbox.wait_for(1)
    assert SECRET not in repr(receiver)


async def test_a_secret_header_and_the_framework_free_handle() -> None:
    inbox = Inbox()
    header = "X-Market-Secret"
    async with app_with("/notification", inbox, secret=SECRET, secret_header=header) as (base, _):
        assert (await post(base + "/notification", message_body(1)))[0] == 403
        wrong = {header: SECRET.upper() if SECRET.upper() != SECRET else SECRET + "x"}
        assert (await post(base + "/notification", message_body(1), wrong))[0] == 403
        assert (await post(base + "/notification", message_body(1), {header: SECRET}))[0] == 200
        await inbox.wait_for(1)

    receiver = NotificationReceiver(Inbox(), name=NAME, version=VERSION, secret=SECRET)
    assert (await receiver.handle(message_body(1))).status == 403  # no secret given
    assert (await receiver.handle(message_body(1), secret="é" * 30)).status == 403
    assert (await receiver.handle(message_body(1), secret=SECRET)).status == 200
    await receiver.aclose()


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("short", "secret must be at least 16 characters, got 5"),
        ("a/b" * 8, "secret may hold only letters, digits and ._~-"),
    ],
)
def test_weak_secrets_are_refused_without_echoing_them(secret: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        NotificationReceiver(Inbox(), name=NAME, version=VERSION, secret=secret)
    assert str(info.value).startswith(message)
    assert secret not in str(info.value)
    with pytest.raises(InvalidRequestError, match=r"\{secret\} segment"):
        add_notification_route(
            web.Application(), "/notification", Inbox(), name=NAME, version=VERSION, secret=SECRET
        )


async def test_the_allow_hook_sees_the_source_address() -> None:
    inbox = Inbox()
    seen: list[str] = []

    def only_market(remote: str) -> bool:
        seen.append(remote)
        return allow_networks(["5.45.207.0/25", "141.8.142.0/25", "5.255.253.0/25"])(remote)

    async with app_with("/notification", inbox, allow=only_market) as (base, receiver):
        status, _ = await post(base + "/notification", message_body(1))
        assert status == 403 and seen == ["127.0.0.1"]
    assert inbox.events == [] and receiver.counts["forbidden"] == 1

    async with app_with("/n", inbox, allow=allow_networks(["127.0.0.0/8"])) as (base, _):
        assert (await post(base + "/n", message_body(1)))[0] == 200
        await inbox.wait_for(1)

    allow = allow_networks(["5.45.207.0/25", "2a02:6b8::/32"])
    assert allow("5.45.207.1") and allow("::ffff:5.45.207.1") and allow("2a02:6b8::1")
    assert not allow("5.45.207.128") and not allow("unix") and not allow("")
    with pytest.raises(InvalidRequestError, match="not a network"):
        allow_networks(["5.45.207.1/25"])
    with pytest.raises(InvalidRequestError, match="list of CIDR strings"):
        allow_networks("5.45.207.0/25")
    # Framework-free: no address given means refused when there is a hook.
    receiver = NotificationReceiver(inbox, name=NAME, version=VERSION, allow=allow)
    assert (await receiver.handle(message_body(2))).status == 403
    assert (await receiver.handle(message_body(2), remote="5.45.207.9")).status == 200
    await receiver.aclose()


async def test_events_for_other_businesses_are_refused() -> None:
    inbox, store = Inbox(), CountingStore()
    receiver = NotificationReceiver(
        inbox, name=NAME, version=VERSION, business_ids=[BUSINESS], seen=store
    )
    answer = await receiver.handle(message_body(1, business=BUSINESS + 1))
    assert answer.status == 403
    assert (
        json.loads(answer.body)["error"]["message"] == f"business {BUSINESS + 1} is not served here"
    )
    unknown = json.dumps({"notificationType": "QUESTION_CREATED", "businessId": 5, "questionId": 1})
    assert (await receiver.handle(unknown)).status == 403
    orders = json.dumps({"notificationType": "ORDER_CREATED", "campaignId": 5, "orderId": 1})
    assert (await receiver.handle(orders)).status == 200  # no businessId to check
    assert (await receiver.handle(message_body(1))).status == 200
    await receiver.aclose()
    assert store.calls == 2 and len(inbox.events) == 2


# -- hostile bodies --------------------------------------------------------------------------


async def test_a_deeply_nested_body_is_400_not_a_recursion_error() -> None:
    inbox = Inbox()
    for depth in (100_000, 1000, 33):
        nested = b'{"notificationType": "X", "a": ' + b"[" * depth + b"]" * depth + b"}"
        receiver = NotificationReceiver(
            inbox, name=NAME, version=VERSION, max_body_bytes=max(len(nested), 1024)
        )
        answer = await receiver.handle(nested)
        assert answer.status == 400, depth
        error = json.loads(answer.body)["error"]
        assert error == {
            "type": "WRONG_EVENT_FORMAT",
            "message": "JSON nested deeper than 32 levels",
        }
    ok = b'{"notificationType": "X", "a": ' + b"[" * 30 + b"]" * 30 + b"}"
    assert (await receiver.handle(ok)).status == 200
    await receiver.aclose()

    # Over HTTP with the default limits: 400 too (the size check answers first).
    deep = b'{"notificationType": "X", "a": ' + b"{" * 100_000
    async with app_with("/notification", inbox) as (base, _):
        status, answer = await post(base + "/notification", deep)
    assert (status, answer["error"]["type"]) == (400, "WRONG_EVENT_FORMAT")


async def test_bodies_over_the_size_limit_are_400() -> None:
    inbox = Inbox()
    receiver = NotificationReceiver(inbox, name=NAME, version=VERSION)
    pad = b'{"notificationType": "X", "pad": "' + b"p" * MAX_BODY_BYTES + b'"}'
    answer = await receiver.handle(pad)
    assert answer.status == 400
    message = json.loads(answer.body)["error"]["message"]
    assert message == f"body is {len(pad)} bytes, over the limit of 65536 bytes"
    assert (await receiver.handle(pad.decode())).status == 400
    fits = b'{"notificationType": "X", "pad": "' + b"p" * (MAX_BODY_BYTES - 40) + b'"}'
    assert (await receiver.handle(fits)).status == 200
    await receiver.aclose()

    async with app_with("/notification", inbox) as (base, _):
        started = time.monotonic()
        status, answer = await post(base + "/notification", b"[" * 5_000_000)
        assert status == 400 and "over the limit of 65536 bytes" in answer["error"]["message"]
        assert time.monotonic() - started < 5

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to trust
            for _ in range(100):
                yield b" " * 1024

        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": "application/json"}
            async with session.post(base + "/notification", data=chunked(), headers=headers) as r:
                assert r.status == 400
                assert "over the limit" in (await r.json())["error"]["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_content_type_must_be_json(content_type: str | None) -> None:
    inbox = Inbox()
    async with app_with("/notification", inbox) as (base, receiver):
        async with aiohttp.ClientSession() as session:
            headers = {} if content_type is None else {"Content-Type": content_type}
            async with session.post(
                base + "/notification", data=message_body(1), headers=headers
            ) as r:
                assert r.status == 400
                error = (await r.json())["error"]
        assert error["type"] == "WRONG_EVENT_FORMAT"
        assert error["message"].startswith("Content-Type must be application/json, got ")
        ok = {"Content-Type": "Application/JSON; charset=utf-8"}
        assert (await post(base + "/notification", message_body(1), ok))[0] == 200
        await inbox.wait_for(1)
    assert receiver.counts["bad_format"] == 1


# -- bounded callbacks ---------------------------------------------------------------------------


async def test_a_full_receiver_answers_500_logs_and_hears_the_redelivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()
    done: list[Notification] = []

    async def slow(event: Notification) -> None:
        await gate.wait()
        done.append(event)

    store = CountingStore()
    receiver = NotificationReceiver(slow, name=NAME, version=VERSION, max_pending=2, seen=store)
    assert [(await receiver.handle(message_body(i))).status for i in (1, 2)] == [200, 200]
    with caplog.at_level(logging.WARNING, logger="yamarket_chats.notifications"):
        full = await receiver.handle(message_body(3))
    assert full.status == 500
    assert json.loads(full.body)["error"]["type"] == "UNKNOWN"
    assert "answering 500" in caplog.text and "max_pending" in caplog.text
    assert len(store) == 2  # the refused event was not remembered
    gate.set()
    await asyncio.wait_for(asyncio.gather(*receiver._tasks), 5)
    again = await receiver.handle(message_body(3))  # Market's redelivery
    assert again.status == 200 and again.event is not None
    await receiver.aclose()
    assert len(done) == 3


async def test_10k_forged_events_with_a_hanging_callback_stay_bounded() -> None:
    """Authenticated forgeries, each new, each hanging its callback: bounded and fast."""
    hang = asyncio.Event()

    async def hanging(event: Notification) -> None:
        await hang.wait()

    store = MemorySeenStore()
    receiver = NotificationReceiver(
        hanging, name=NAME, version=VERSION, secret=SECRET, seen=store, max_pending=100
    )
    bodies = [message_body(i) for i in range(10_000)]
    tracemalloc.start()
    try:
        slowest = 0.0
        for i, body in enumerate(bodies):
            if i == 1_000:
                gc.collect()
                after_1k = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            answer = await receiver.handle(body, secret=SECRET)
            slowest = max(slowest, time.perf_counter() - started)
            assert answer.status == (200 if i < 100 else 500)
        gc.collect()
        after_10k = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert receiver.pending == 100 and len(tasks) == 100 and len(store) == 100
    assert receiver.counts == {"accepted": 100, "busy": 9_900}
    assert slowest < 1.0
    growth = after_10k - after_1k
    print(f"\n10k forged: slowest answer {slowest * 1000:.2f} ms, growth 1k->10k {growth} B")
    assert growth < 256 * 1024, growth  # the other 9,000 left nothing behind
    hang.set()
    await receiver.aclose()


async def test_forged_flood_over_http_answers_fast_while_callbacks_hang() -> None:
    hang = asyncio.Event()

    async def hanging(event: Notification) -> None:
        await hang.wait()

    path = "/{secret}/notification"
    async with app_with(path, hanging, secret=SECRET, max_pending=50) as (base, receiver):
        url = f"{base}/{SECRET}/notification"
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> tuple[int, float]:
                started = time.perf_counter()
                headers = {"Content-Type": "application/json"}
                async with session.post(url, data=message_body(i), headers=headers) as r:
                    await r.read()
                    return r.status, time.perf_counter() - started

            results = await asyncio.gather(*(one(i) for i in range(500)))
        statuses = [s for s, _ in results]
        assert statuses.count(200) == 50 and statuses.count(500) == 450
        assert max(t for _, t in results) < 5.0  # all 500 concurrent, on a loaded 2-core box
        assert receiver.pending == 50
        hang.set()


async def test_a_callback_that_blocks_the_loop_does_not_delay_the_answer() -> None:
    """The answer is on the wire before the callback starts (here: sleeps 2 s in the loop)."""

    async def blocking(event: Notification) -> None:
        time.sleep(2.0)  # noqa: ASYNC251 - the mistake the docs warn about

    async with app_with("/notification", blocking) as (base, _):
        result: list[Any] = []

        def client() -> None:
            request = urllib.request.Request(
                base + "/notification",
                data=message_body(1),
                headers={"Content-Type": "application/json"},
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    result.append((response.status, time.perf_counter() - started))
            except urllib.error.URLError as exc:  # pragma: no cover - reported below
                result.append((exc, 0.0))

        thread = threading.Thread(target=client)
        thread.start()
        await asyncio.to_thread(thread.join)
    ((status, latency),) = result
    assert status == 200
    assert latency < 1.5, latency


async def test_callback_timeout_cancels_a_hanging_callback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def hanging(event: Notification) -> None:
        await asyncio.Event().wait()

    receiver = NotificationReceiver(hanging, name=NAME, version=VERSION, callback_timeout=0.05)
    await receiver.handle(message_body(1))
    with caplog.at_level(logging.ERROR, logger="yamarket_chats.notifications"):
        await asyncio.wait_for(asyncio.gather(*receiver._tasks), 5)
    assert receiver.pending == 0 and "ran over 0.05 s" in caplog.text


# -- the fetch cap ------------------------------------------------------------------------


async def test_fetcher_refuses_other_businesses_and_caps_each_business(
    fake: FakeServer, client: ChatsClient
) -> None:
    other = 2002
    fetcher = NotificationFetcher(
        client, business_ids={BUSINESS, other}, rate=RateLimit(3, 3600, burst=3)
    )
    chats = {b: fake.market.chats(b)[0] for b in (BUSINESS, other)}

    def created(business: int) -> ChatCreatedNotification:
        event = decode_notification(
            json.dumps(
                {
                    "notificationType": "CHAT_CREATED",
                    "chatId": chats[business].chat_id,
                    "businessId": business,
                    "createdAt": "2025-03-01T12:00:00Z",
                }
            )
        )
        assert isinstance(event, ChatCreatedNotification)
        return event

    forged = ChatCreatedNotification(
        chat_id=5, business_id=999, created_at=created(other).created_at
    )
    with pytest.raises(InvalidRequestError, match="businessId 999 of CHAT_CREATED is not one of"):
        await fetcher.fetch_chat(forged)
    assert len(fake.journal) == 0

    for _ in range(3):
        assert (await fetcher.fetch_chat(created(BUSINESS))).chat_id == chats[BUSINESS].chat_id
    started = time.monotonic()
    with pytest.raises(FetchLimitError, match=f"business {BUSINESS}: the notification fetch cap"):
        await fetcher.fetch_chat(created(BUSINESS))
    assert time.monotonic() - started < 0.5  # refused at once, not queued
    assert len(fake.journal.entries("get_chat")) == 3
    # Another business has its own bucket.
    await fetcher.fetch_chat(created(other))
    assert fetcher.fetched == {BUSINESS: 3, other: 1} and fetcher.refused == {BUSINESS: 1}

    message = ChatMessageSentNotification(
        chat_id=chats[BUSINESS].chat_id,
        raw_message_id="1",
        business_id=BUSINESS,
        sent_at=forged.created_at,
    )
    with pytest.raises(FetchLimitError):
        await fetcher.fetch_message(message)  # messages share the business's cap
    assert len(fake.journal) == 4


async def test_fetcher_max_wait_and_validation(client: ChatsClient) -> None:
    fetcher = NotificationFetcher(
        client, business_ids=[BUSINESS], rate=RateLimit(1, 3600, burst=1), max_wait=0.05
    )
    await fetcher._take(BUSINESS, "get_chat")
    started = time.monotonic()
    with pytest.raises(FetchLimitError):
        await fetcher._take(BUSINESS, "get_chat")
    assert 0.04 < time.monotonic() - started < 2
    for bad in ([], [0], "1001", [True]):
        with pytest.raises(InvalidRequestError, match="business_ids"):
            NotificationFetcher(client, business_ids=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="max_wait"):
        NotificationFetcher(client, business_ids=[1], max_wait=-1)


class HangingStore(MemorySeenStore):
    """A seen-set whose calls hang until cancelled (``add`` fails at once if ``broken``)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.discarding = asyncio.Event()

    async def add(self, key: str) -> bool:
        if self.broken:
            raise ConnectionError("store down")
        await asyncio.Event().wait()
        return True

    async def discard(self, key: str) -> None:
        self.discarding.set()
        await asyncio.Event().wait()


async def test_a_cancelled_answer_gives_its_slot_back() -> None:
    store = HangingStore()
    receiver = NotificationReceiver(Inbox(), name=NAME, version=VERSION, seen=store, max_pending=1)
    for _ in range(3):
        task = asyncio.ensure_future(receiver.handle(message_body(1)))
        await asyncio.sleep(0.01)
        assert receiver.pending == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert receiver.pending == 0
    # Cancelled while forgetting the key after a failed add: given back once only.
    store.broken = True
    task = asyncio.ensure_future(receiver.handle(message_body(1)))
    await asyncio.wait_for(store.discarding.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert receiver.pending == 0


# -- what a body can cost the seen-set ---------------------------------------------


class KeyBytesStore(MemorySeenStore):
    """A seen-set that counts the bytes of the keys it keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.key_bytes = 0
        self.longest = 0

    async def add(self, key: str) -> bool:
        new = await super().add(key)
        if new:
            self.key_bytes += len(key.encode())
            self.longest = max(self.longest, len(key.encode()))
        return new


async def test_seen_keys_stay_small_whatever_the_message_id_holds() -> None:
    # The spec gives messageId no length bound: 2,000 events with a 60 KB one
    # each would keep 120 MB of keys (6 GB at the default 100,000 keys).
    store = KeyBytesStore()
    calls = 0

    async def count(event: Notification) -> None:
        nonlocal calls
        calls += 1

    receiver = NotificationReceiver(
        count, name=NAME, version=VERSION, seen=store, max_pending=10_000
    )
    filler = "9" * 60_000
    for i in range(2000):
        answer = await receiver.handle(message_body(f"{i}-{filler}"))
        assert answer.status == 200 and answer.event is not None
    again = await receiver.handle(message_body(f"7-{filler}"))  # a redelivery
    assert again.status == 200 and again.event is None
    await receiver.aclose()
    assert calls == 2000 and len(store) == 2000
    assert store.longest <= 200
    assert store.key_bytes <= 2000 * 200  # 400 KB, not 120 MB


def test_dedup_keys_are_short_and_keep_short_ids_readable() -> None:
    short = decode_notification(message_body(345))
    assert dedup_key(short) == f"CHAT_MESSAGE_SENT:{BUSINESS}:77:345"
    long_ids = [decode_notification(message_body(c * 60_000)) for c in "ab"]
    keys = {dedup_key(event) for event in long_ids}
    assert len(keys) == 2 and all(len(key) <= 200 for key in keys)
    odd_type = json.dumps({"notificationType": "X" * 60_000, "n": 1})
    assert len(dedup_key(decode_notification(odd_type))) <= 200


@pytest.mark.parametrize(
    "body",
    ['{"notificationType": "PING", "x": "\ud800"}', '{"notificationType": "PI\udfffNG"}'],
)
async def test_a_str_body_with_a_lone_surrogate_is_400(body: str) -> None:
    with pytest.raises(NotificationFormatError, match="not UTF-8"):
        decode_notification(body)
    inbox = Inbox()
    receiver = NotificationReceiver(inbox, name=NAME, version=VERSION)
    answer = await receiver.handle(body)
    assert answer.status == 400
    assert json.loads(answer.body)["error"]["type"] == "WRONG_EVENT_FORMAT"
    assert receiver.pending == 0 and not inbox.events


@pytest.mark.parametrize(
    "business", ["999", str(BUSINESS), 999.0, float(BUSINESS), None, True, [5]]
)
async def test_an_unknown_type_with_a_non_int_business_id_is_403(business: object) -> None:
    inbox, store = Inbox(), CountingStore()
    receiver = NotificationReceiver(
        inbox, name=NAME, version=VERSION, business_ids={BUSINESS}, seen=store
    )
    body = json.dumps({"notificationType": "CHAT_CREATED_V2", "businessId": business, "chatId": 1})
    answer = await receiver.handle(body)
    assert answer.status == 403 and answer.event is None
    assert receiver.counts["wrong_business"] == 1
    assert store.calls == 0 and not inbox.events
    huge = json.dumps({"notificationType": "X", "businessId": "9" * 60_000})
    message = json.loads((await receiver.handle(huge)).body)["error"]["message"]
    assert message == "business a string of 60000 characters is not served here"
    ok = json.dumps({"notificationType": "CHAT_CREATED_V2", "businessId": BUSINESS, "chatId": 1})
    assert (await receiver.handle(ok)).status == 200
    await receiver.aclose()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"business_ids": {2**63}}, "business_ids"),
        ({"business_ids": {2**64}}, "business_ids"),
        ({"business_ids": {0}}, "business_ids"),
        ({"business_ids": {True}}, "business_ids"),
        ({"max_pending": 2**64}, "max_pending"),
        ({"max_pending": 0}, "max_pending"),
        ({"max_body_bytes": 1023}, "max_body_bytes"),
        ({"max_body_bytes": 2048.0}, "max_body_bytes"),
        ({"seen_timeout": float("inf")}, "seen_timeout"),
        ({"seen_timeout": float("nan")}, "seen_timeout"),
        ({"callback_timeout": True}, "callback_timeout"),
        ({"callback_timeout": "5"}, "callback_timeout"),
    ],
)
async def test_receiver_options_follow_the_client_rules(
    options: dict[str, Any], field: str, client: ChatsClient
) -> None:
    with pytest.raises(InvalidRequestError, match=field) as info:
        NotificationReceiver(Inbox(), name=NAME, version=VERSION, **options)
    if field == "business_ids" and next(iter(options[field])) > 1:
        assert "int64" in str(info.value)
        with pytest.raises(InvalidRequestError, match=r"business_ids.*int64"):
            NotificationFetcher(client, business_ids=options[field])


def test_dedup_keys_hash_non_ascii_and_control_characters() -> None:
    for raw in ("\U0001f600" * 60, "12\n34", "é"):
        key = dedup_key(decode_notification(message_body(raw)))
        assert key.isascii() and key.isprintable() and len(key) <= 200
        assert raw not in key


async def test_an_unknown_type_is_logged_on_one_line_whatever_it_holds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = NotificationReceiver(Inbox(), name=NAME, version=VERSION, business_ids={BUSINESS})
    forged = "X\nCRITICAL a forged record\x1b[31m" + "y" * 5_000
    body = json.dumps({"notificationType": forged, "businessId": 999})
    with caplog.at_level(logging.WARNING, logger="yamarket_chats.notifications"):
        assert (await receiver.handle(body)).status == 403
    [record] = [r for r in caplog.records if "refused" in r.getMessage()]
    line = record.getMessage()
    assert "\n" not in line and "\x1b" not in line and len(line) < 200, line
    await receiver.aclose()
