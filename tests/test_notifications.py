"""Push notifications: the fake posts chat events over loopback to a receiver app."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from yamarket_chats import ChatMessage, ChatsClient
from yamarket_chats.notifications import (
    ChatArbitrageFinishedNotification,
    ChatArbitrageStartedNotification,
    ChatCreatedNotification,
    ChatMessageSentNotification,
    MemorySeenStore,
    Notification,
    NotificationAnswer,
    NotificationFormatError,
    NotificationReceiver,
    PingNotification,
    UnknownNotification,
    add_notification_route,
    decode_notification,
    fetch_chat,
    fetch_message,
)
from yamarket_chats.testing import FakeNotifier, FakeServer

from .conftest import BUSINESS
from .virtual_clock import VirtualClock, run_virtual

NAME, VERSION = "test-shop", "1.2.3"


class Inbox:
    """Collects the events a callback receives; waits on a condition, not a clock."""

    def __init__(self) -> None:
        self.events: list[Notification] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: Notification) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Notification]:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.events) >= count)

        await asyncio.wait_for(wait(), timeout)
        return list(self.events)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on a loopback port; yield its base URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def receiver_app(
    callback: Callable[[Notification], Any], **kwargs: Any
) -> AsyncIterator[tuple[str, NotificationReceiver]]:
    """A receiver app; yields the notification URL and the receiver."""
    app = web.Application()
    receiver = add_notification_route(
        app, "/notification", callback, name=NAME, version=VERSION, **kwargs
    )
    async with serve(app) as base:
        yield base + "/notification", receiver


async def post(url: str, body: bytes) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp,
    ):
        return resp.status, json.loads(await resp.read())


def assert_ok(answer: Any) -> None:
    assert answer["name"] == NAME
    assert answer["version"] == VERSION
    assert dt.datetime.fromisoformat(answer["time"].replace("Z", "+00:00")).tzinfo is not None


# -- the whole loop over loopback ------------------------------------------------


async def test_fake_events_reach_callback_once_and_messages_are_fetched(
    fake: FakeServer, client: ChatsClient
) -> None:
    inbox = Inbox()
    fetched: dict[int, ChatMessage] = {}

    async def on_event(event: Notification) -> None:
        if isinstance(event, ChatMessageSentNotification):
            assert event.message_id is not None
            fetched[event.message_id] = await fetch_message(client, event)
        await inbox(event)

    async with receiver_app(on_event) as (url, _):
        notifier = fake.notify_to(url, duplicate=True)
        chat_id = fake.market.add_chat(BUSINESS)
        customer_id = fake.market.add_message(BUSINESS, chat_id, "Где мой заказ?")
        await client.send_message_to_chat(BUSINESS, chat_id, "Уже в пути")
        events = await inbox.wait_for(3)
        await notifier.wait_idle()

        # Every event was posted twice and both deliveries answered 200 ...
        assert len(notifier.deliveries) == 6
        assert [d.attempt for d in notifier.deliveries] == [1, 2] * 3
        for delivery in notifier.deliveries:
            assert delivery.status == 200, delivery
            assert_ok(json.loads(delivery.body))
        # ... the live format: messageId is a string on the wire.
        assert notifier.deliveries[2].payload["messageId"] == str(customer_id)

    # ... but each reached the callback once (the receiver drained at app shutdown).
    assert inbox.events == events
    created, first, reply = events
    assert isinstance(created, ChatCreatedNotification)
    assert (created.business_id, created.chat_id) == (BUSINESS, chat_id)
    assert created.created_at.tzinfo is not None
    assert created.notification_type == "CHAT_CREATED"
    assert isinstance(first, ChatMessageSentNotification)
    assert isinstance(reply, ChatMessageSentNotification)
    assert first.message_id == customer_id
    assert first.raw_message_id == str(customer_id)
    assert reply.message_id is not None and reply.message_id > customer_id
    assert first.sent_at.utcoffset() == dt.timedelta(hours=3)

    assert fetched[customer_id].message == "Где мой заказ?"
    assert fetched[customer_id].sender == "CUSTOMER"
    assert fetched[reply.message_id].message == "Уже в пути"
    assert fetched[reply.message_id].sender == "PARTNER"
    chat = await fetch_chat(client, created)
    assert chat.chat_id == chat_id


async def test_concurrent_duplicates_reach_callback_once(fake: FakeServer) -> None:
    inbox = Inbox()
    async with receiver_app(inbox) as (url, _):
        notifier = fake.notify_to(url)
        chat = fake.market.chats(BUSINESS)[0]
        body = {
            "notificationType": "CHAT_MESSAGE_SENT",
            "businessId": BUSINESS,
            "chatId": chat.chat_id,
            "messageId": "123456",
            "sentAt": "2025-03-01T12:00:00+03:00",
        }
        batches = await asyncio.gather(*(notifier.send(body) for _ in range(8)))
        assert [d.status for batch in batches for d in batch] == [200] * 8
        (event,) = await inbox.wait_for(1)
    assert isinstance(event, ChatMessageSentNotification)
    assert event.message_id == 123456
    assert inbox.events == [event]


async def test_duplicate_can_be_answered_as_an_error(fake: FakeServer) -> None:
    inbox = Inbox()
    async with receiver_app(inbox, reject_duplicates=True) as (url, _):
        notifier = fake.notify_to(url, duplicate=True)
        fake.market.add_chat(BUSINESS)
        await notifier.wait_idle()
        first, second = notifier.deliveries
        assert first.status == 200
        assert second.status == 400
        assert json.loads(second.body)["error"]["type"] == "DUPLICATED_EVENT"
        await inbox.wait_for(1)
    assert len(inbox.events) == 1


# -- answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'"CHAT_CREATED"',
        b'{"chatId": 1}',
        b'{"notificationType": 5}',
        b'{"notificationType": "CHAT_CREATED", "businessId": 1, "chatId": 2}',
        b'{"notificationType": "CHAT_CREATED", "businessId": 1, "chatId": "abc",'
        b' "createdAt": "2025-01-01T00:00:00Z"}',
        b'{"notificationType": "CHAT_CREATED", "businessId": 0, "chatId": 2,'
        b' "createdAt": "2025-01-01T00:00:00Z"}',
        b'{"notificationType": "CHAT_CREATED", "businessId": 1, "chatId": 2,'
        b' "createdAt": "2025-01-01T00:00:00"}',
        b'{"notificationType": "CHAT_MESSAGE_SENT", "businessId": 1, "chatId": 2,'
        b' "messageId": 15, "sentAt": "2025-01-01T00:00:00Z"}',
        b'{"notificationType": "CHAT_CREATED", "businessId": 1, "chatId": "2",'
        b' "createdAt": "2025-01-01T00:00:00Z"}',
        b'{"notificationType": "CHAT_CREATED", "businessId": 1, "chatId": 9223372036854775808,'
        b' "createdAt": "2025-01-01T00:00:00Z"}',
        b'{"notificationType": "PING", "time": 1}',
        b'{"notificationType": "CHAT_MESSAGE_SENT", "businessId": 1, "chatId": 2,'
        b' "messageId": [3], "sentAt": "2025-01-01T00:00:00Z"}',
        b'{"notificationType": "PING", "time": "yesterday"}',
    ],
)
async def test_malformed_bodies_are_refused_and_never_reach_callback(body: bytes) -> None:
    inbox = Inbox()
    async with receiver_app(inbox) as (url, receiver):
        status, answer = await post(url, body)
        assert status == 400
        assert answer["error"]["type"] == "WRONG_EVENT_FORMAT"
        assert answer["error"]["message"]
        assert receiver.pending == 0
        # A good event after the bad one is the first and only one delivered.
        good = b'{"notificationType": "SOMETHING_NEW", "x": 1}'
        assert (await post(url, good))[0] == 200
        (event,) = await inbox.wait_for(1)
    assert isinstance(event, UnknownNotification)
    assert inbox.events == [event]


async def test_unknown_type_passes_through_once(fake: FakeServer) -> None:
    inbox = Inbox()
    body = {"notificationType": "ORDER_CREATED", "orderId": 42, "campaignId": 7}
    async with receiver_app(inbox) as (url, _):
        notifier = fake.notify_to(url)
        deliveries = await notifier.send(body, duplicate=True)
        assert [d.status for d in deliveries] == [200, 200]
        (event,) = await inbox.wait_for(1)
    assert event == UnknownNotification("ORDER_CREATED", body)
    assert inbox.events == [event]


async def test_ping_is_answered_and_not_passed_on(fake: FakeServer) -> None:
    inbox = Inbox()
    async with receiver_app(inbox) as (url, receiver):
        notifier = fake.notify_to(url)
        delivery = await notifier.ping()
        assert delivery.status == 200
        assert_ok(json.loads(delivery.body))
        assert receiver.pending == 0
        fake.market.add_chat(BUSINESS)
        (event,) = await inbox.wait_for(1)
    assert isinstance(event, ChatCreatedNotification)


async def test_arbitrage_events(fake: FakeServer) -> None:
    inbox = Inbox()
    async with receiver_app(inbox) as (url, _):
        notifier = fake.notify_to(url)
        for kind, field in [("STARTED", "startedAt"), ("FINISHED", "finishedAt")]:
            notifier.send_soon(
                {
                    "notificationType": f"CHAT_ARBITRAGE_{kind}",
                    "businessId": BUSINESS,
                    "chatId": 77,
                    field: "2025-05-01T10:00:00+03:00",
                },
                duplicate=True,
            )
        started, finished = await inbox.wait_for(2)
        await notifier.wait_idle()
    assert isinstance(started, ChatArbitrageStartedNotification)
    assert isinstance(finished, ChatArbitrageFinishedNotification)
    assert started.started_at == finished.finished_at
    assert started.started_at.utcoffset() == dt.timedelta(hours=3)
    assert len(inbox.events) == 2


# -- the framework-free receiver ---------------------------------------------------


async def test_answer_does_not_wait_for_the_callback() -> None:
    gate = asyncio.Event()
    done: list[Notification] = []

    async def slow(event: Notification) -> None:
        await gate.wait()
        done.append(event)

    receiver = NotificationReceiver(slow, name=NAME, version=VERSION)
    body = b'{"notificationType": "CHAT_CREATED", "businessId": 1, "chatId": 2,'
    body += b' "createdAt": "2025-01-01T00:00:00Z"}'
    answer = await receiver.handle(body)
    assert answer.status == 200
    assert isinstance(answer.event, ChatCreatedNotification)
    assert_ok(msgspec.json.decode(answer.body))
    assert receiver.pending == 1 and not done
    again = await receiver.handle(body)
    assert (again.status, again.event) == (200, None)
    gate.set()
    await receiver.aclose()
    assert done == [answer.event]
    assert receiver.pending == 0


async def test_callback_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(event: Notification) -> None:
        raise RuntimeError("boom")

    receiver = NotificationReceiver(broken, name=NAME, version=VERSION)
    answer = await receiver.handle(b'{"notificationType": "X", "n": 1}')
    assert answer.status == 200
    with caplog.at_level(logging.ERROR, logger="yamarket_chats.notifications"):
        await receiver.aclose()
    (record,) = caplog.records
    assert "callback failed" in record.getMessage()
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])


async def test_aclose_cancels_callbacks_past_the_timeout() -> None:
    async def forever(event: Notification) -> None:
        await asyncio.Event().wait()

    receiver = NotificationReceiver(forever, name=NAME, version=VERSION)
    await receiver.handle(b'{"notificationType": "X"}')
    await receiver.aclose(timeout=0.01)
    assert receiver.pending == 0


class BrokenStore:
    def __init__(self, hang: bool) -> None:
        self.hang = hang

    async def add(self, key: str) -> bool:
        if self.hang:
            await asyncio.Event().wait()
        raise ConnectionError("store down")

    async def discard(self, key: str) -> None:
        pass


class LateStore(MemorySeenStore):
    """Keeps the key, then answers too late (a slow shared store)."""

    slow = True

    async def add(self, key: str) -> bool:
        new = await super().add(key)
        if self.slow:
            await asyncio.Event().wait()
        return new


async def test_a_key_kept_by_a_timed_out_store_does_not_drop_the_redelivery() -> None:
    inbox = Inbox()
    store = LateStore()
    receiver = NotificationReceiver(
        inbox, name=NAME, version=VERSION, seen=store, seen_timeout=0.05
    )
    body = b'{"notificationType": "X", "n": 1}'
    assert (await receiver.handle(body)).status == 500  # Market will deliver again
    store.slow = False
    answer = await receiver.handle(body)
    assert answer.status == 200 and answer.event is not None
    await receiver.aclose()


@pytest.mark.parametrize("hang", [False, True])
async def test_failing_seen_store_answers_unknown(hang: bool) -> None:
    inbox = Inbox()
    receiver = NotificationReceiver(
        inbox, name=NAME, version=VERSION, seen=BrokenStore(hang), seen_timeout=0.05
    )
    answer = await receiver.handle(b'{"notificationType": "X"}')
    assert answer.status == 500
    assert msgspec.json.decode(answer.body)["error"]["type"] == "UNKNOWN"
    assert answer.event is None and receiver.pending == 0


def test_decode_keeps_the_string_message_id_and_its_int() -> None:
    event = decode_notification(
        '{"notificationType": "CHAT_MESSAGE_SENT", "businessId": 1, "chatId": 2,'
        ' "messageId": "345", "sentAt": "2025-01-01T09:00:00.123+03:00", "extra": true}'
    )
    assert event == ChatMessageSentNotification(
        business_id=1,
        chat_id=2,
        raw_message_id="345",
        sent_at=dt.datetime(2025, 1, 1, 6, 0, 0, 123000, tzinfo=dt.timezone.utc),
    )
    assert isinstance(event, ChatMessageSentNotification)
    assert event.message_id == 345
    ping = decode_notification(b'{"notificationType": "PING", "time": "2025-01-01T00:00:00Z"}')
    assert isinstance(ping, PingNotification)
    with pytest.raises(NotificationFormatError) as info:
        decode_notification(b"{}")
    assert isinstance(info.value, ValueError)


async def test_memory_seen_store_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("yamarket_chats.notifications._seen.time.monotonic", lambda: now[0])
    store = MemorySeenStore(max_size=3, ttl=60)
    assert [await store.add(k) for k in "abca"] == [True, True, True, False]
    assert await store.add("d")  # evicts the oldest, "a"
    assert len(store) == 3
    assert await store.add("a")
    now[0] += 61  # everything expires
    assert await store.add("b")
    assert len(store) == 1
    with pytest.raises(ValueError):
        MemorySeenStore(max_size=0)


# -- the fake's side -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_fake_records_failed_deliveries_and_stops(fake: FakeServer) -> None:
    notifier = fake.notify_to(f"http://127.0.0.1:{free_port()}/notification")
    with pytest.raises(RuntimeError):
        fake.notify_to("http://127.0.0.1:1/")
    fake.market.add_chat(BUSINESS)
    await fake.stop_notifying()
    assert fake.notifier is None
    assert notifier.on_change not in fake.market.listeners
    (delivery,) = notifier.deliveries
    assert delivery.status is None and delivery.error
    fake.market.add_chat(BUSINESS)  # no longer notified
    assert len(notifier.deliveries) == 1
    await fake.stop_notifying()  # idempotent


# -- shutting down -------------------------------------------------------------------

CREATED = (
    b'{"notificationType": "CHAT_CREATED", "businessId": 1, "chatId": 1,'
    b' "createdAt": "2025-01-01T00:00:00Z"}'
)


class SlowStore(MemorySeenStore):
    """A seen-set whose ``add`` takes ``delay`` seconds, or until ``gate`` opens."""

    def __init__(self, delay: float | None = None) -> None:
        super().__init__()
        self.delay = delay
        self.calls = 0
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def add(self, key: str) -> bool:
        self.calls += 1
        self.entered.set()
        if self.delay is None:
            await self.gate.wait()
        else:
            await asyncio.sleep(self.delay)
        return await super().add(key)


def test_a_request_in_flight_at_shutdown_runs_its_callback_before_cleanup() -> None:
    """On virtual time: the waits below are long, and cost nothing."""

    async def main(loop: VirtualClock) -> None:
        log: list[str] = []

        async def callback(event: Notification) -> None:
            log.append("callback start")
            await asyncio.sleep(0.2)
            log.append("callback done")

        async def close_client(_: web.Application) -> None:
            log.append("client closed")

        async def client_context(_: web.Application) -> AsyncIterator[None]:
            yield
            log.append("client context closed")

        app = web.Application()
        # Registered first, as an app usually does: the receiver must still drain before.
        app.on_cleanup.append(close_client)
        app.cleanup_ctx.append(client_context)
        store = SlowStore(1.0)
        add_notification_route(
            app, "/notification", callback, name=NAME, version=VERSION, seen=store
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        posting = asyncio.ensure_future(post(f"http://{host}:{port}/notification", CREATED))
        await asyncio.wait_for(store.entered.wait(), 10)
        await asyncio.sleep(0.3)  # the request is waiting on the seen-set (1 s)
        await runner.cleanup()
        status, answer = await asyncio.wait_for(posting, 10)
        assert status == 200
        assert_ok(answer)
        await asyncio.sleep(60)  # a callback started late would show up here
        assert log == ["callback start", "callback done", "client context closed", "client closed"]

    run_virtual(main)


async def one_event_in_the_seen_set() -> tuple[
    Inbox, SlowStore, NotificationReceiver, asyncio.Future[NotificationAnswer]
]:
    """A receiver whose first event is held in the seen-set (no callback yet)."""
    inbox = Inbox()
    store = SlowStore()
    receiver = NotificationReceiver(inbox, name=NAME, version=VERSION, seen=store)
    accepting = asyncio.ensure_future(receiver.handle(CREATED))
    await asyncio.wait_for(store.entered.wait(), 10)
    return inbox, store, receiver, accepting


def test_aclose_refuses_new_events_and_waits_for_those_being_accepted() -> None:
    async def main(loop: VirtualClock) -> None:
        inbox, store, receiver, accepting = await one_event_in_the_seen_set()
        assert receiver.pending == 1
        closing = asyncio.ensure_future(receiver.aclose(timeout=None))
        await asyncio.sleep(0)
        assert receiver.closing and not closing.done()
        late = await receiver.handle(b'{"notificationType": "X", "n": 2}')
        assert late.status == 500 and late.event is None
        assert msgspec.json.decode(late.body)["error"]["type"] == "UNKNOWN"
        assert store.calls == 1  # not remembered: Market's redelivery will be heard
        await asyncio.sleep(4.0)  # on the virtual clock, just short of the seen-set timeout (5 s)
        assert not closing.done()  # still waiting for the event being accepted
        store.gate.set()
        assert (await accepting).status == 200
        await asyncio.wait_for(closing, 10)
        assert len(inbox.events) == 1  # its callback ran before aclose() returned
        assert receiver.pending == 0 and receiver.counts["closing"] == 1
        assert (await receiver.handle(b'{"notificationType": "X", "n": 3}')).status == 500
        assert not inbox.events[1:]

    run_virtual(main)


def test_aclose_gives_up_on_an_event_still_being_accepted() -> None:
    async def main(loop: VirtualClock) -> None:
        inbox, store, receiver, accepting = await one_event_in_the_seen_set()
        started = loop.time()
        await receiver.aclose(timeout=5.0)
        assert loop.time() - started == pytest.approx(5.0)  # it gave up at the timeout
        store.gate.set()
        answer = await accepting
        assert answer.status == 500  # too late to run a callback: delivered again later
        assert len(store) == 0 and receiver.pending == 0
        await asyncio.sleep(3600)  # any callback started late would have run by now
        assert not inbox.events

    run_virtual(main)


# -- the fake notifier ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def slow_endpoint(delay: float) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An endpoint answering 200 after ``delay`` seconds; yields its URL and the bodies."""
    bodies: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        await asyncio.sleep(delay)
        return web.json_response({"version": VERSION, "name": NAME, "time": "2025-01-01T00:00:00Z"})

    app = web.Application()
    app.router.add_post("/notification", handler)
    async with serve(app) as base:
        yield base + "/notification", bodies


async def test_the_fake_gives_ping_one_second_as_market_does(fake: FakeServer) -> None:
    async with slow_endpoint(1.6) as (url, _):
        notifier = FakeNotifier(fake.market, url, timeout=10.0)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            ping = await notifier.ping()
            assert loop.time() - started < 1.5
            assert ping.status is None and ping.error and "Timeout" in ping.error
            (event,) = await notifier.send({"notificationType": "X"})  # 10 s for the others
            assert event.status == 200
        finally:
            await notifier.aclose()


async def test_an_odd_payload_does_not_stop_the_fake_notifier(fake: FakeServer) -> None:
    async with slow_endpoint(0) as (url, bodies):
        notifier = FakeNotifier(fake.market, url)
        try:
            with pytest.raises(TypeError):
                notifier.send_soon({"notificationType": "JUNK", "x": b"raw bytes"})
            with pytest.raises(TypeError):
                await notifier.send({"notificationType": "JUNK", "x": {1, 2}})
            notifier.headers = {"X-Bad": "a\r\nb"}  # the POST itself raises ValueError
            notifier.send_soon({"notificationType": "X", "n": 1})
            await asyncio.wait_for(notifier.wait_idle(), 10)
            (failed,) = notifier.deliveries
            assert failed.status is None and failed.error and "ValueError" in failed.error
            notifier.headers = {}
            notifier.send_soon({"notificationType": "X", "n": 2})
            await asyncio.wait_for(notifier.wait_idle(), 10)  # the worker carried on
            assert [d.status for d in notifier.deliveries] == [None, 200]
            assert [json.loads(b) for b in bodies] == [{"notificationType": "X", "n": 2}]
        finally:
            await notifier.aclose()


def test_the_receiver_and_the_route_are_built_from_one_options_object() -> None:
    import dataclasses
    import inspect

    from aiohttp import web

    from yamarket_chats.notifications import (
        NotificationReceiver,
        ReceiverOptions,
        add_notification_route,
    )

    options = set(inspect.signature(ReceiverOptions).parameters)
    receiver = set(inspect.signature(NotificationReceiver).parameters)
    route = set(inspect.signature(add_notification_route).parameters) - {"app", "path"}
    assert receiver == route == options
    made = add_notification_route(
        web.Application(), "/n", print, name="n", version="1", seen_timeout=1.5, business_ids=[7]
    )
    assert isinstance(made.options, ReceiverOptions)
    assert made.options.seen_timeout == 1.5
    assert made.options.business_ids == frozenset({7})  # checked once, kept as a set
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.options.max_pending = 1  # type: ignore[misc]
    secret = "s" * 20
    shown = repr(ReceiverOptions(print, name="n", version="1", secret=secret))
    assert secret not in shown and "secret_key" not in shown
