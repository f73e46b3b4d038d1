"""The fetcher's share of the client's quota: forged events never reach the reserve.

Issue 19, defect E: a burst of authenticated but forged ``CHAT_MESSAGE_SENT``
notifications made the fetcher spend the whole ``get_chat_message`` bucket
(its own cap let 50 through against the client's 17), and the user's own call
right after failed at once with ``RateLimitError``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import pytest
from aiohttp import web

from yamarket_chats import (
    DEFAULT_LIMITS,
    ChatsClient,
    InvalidRequestError,
    NotFoundError,
    RateLimit,
)
from yamarket_chats.hooks import CallInfo, ClientHooks
from yamarket_chats.notifications import (
    DEFAULT_FETCH_SHARE,
    ChatCreatedNotification,
    ChatMessageSentNotification,
    FetchLimitError,
    Notification,
    NotificationFetcher,
    add_notification_route,
    decode_notification,
)
from yamarket_chats.testing import FakeServer

from .conftest import BUSINESS, FAST
from .test_notifications import NAME, VERSION, serve

SECRET = "forged-but-authenticated-0123456789"
FORGED = 601


class Decided(ClientHooks):
    """Wakes the test when every fetch was decided: refused, or its client call begun.

    A fetch that got its tokens may then wait on the client's quota for
    minutes (that is the defect); its ``on_start`` marks it decided.
    """

    def __init__(self) -> None:
        self.fetcher: NotificationFetcher | None = None
        self.all_in = asyncio.Event()

    def check(self) -> None:
        fetcher = self.fetcher
        assert fetcher is not None
        if fetcher.fetched[BUSINESS] + fetcher.refused[BUSINESS] >= FORGED:
            self.all_in.set()

    async def on_start(self, call: CallInfo) -> None:
        self.check()


def forged_message(number: int, chat_id: int) -> dict[str, Any]:
    return {
        "notificationType": "CHAT_MESSAGE_SENT",
        "businessId": BUSINESS,
        "chatId": chat_id,
        "messageId": str(10**12 + number),  # no such message: each one new to the seen-set
        "sentAt": "2025-03-01T12:00:00+03:00",
    }


@pytest.mark.parametrize(
    "limits",
    [
        None,  # the defaults of the issue: 1,000 an hour, a burst of 17
        # An override with a bucket that hardly refills while the test runs.
        {"get_chat_message": RateLimit(40, 360_000.0, burst=40)},
    ],
    ids=["default-limits", "overridden-limits"],
)
async def test_a_burst_of_forged_events_leaves_the_reserve_to_the_users_own_call(
    fake: FakeServer, limits: dict[str, RateLimit] | None
) -> None:
    decided = Decided()
    async with ChatsClient(
        api_key=fake.api_key,
        base_url=fake.url,
        limits=limits,
        hooks=decided,
        backoff=FAST["backoff"],
    ) as client:
        fetcher = decided.fetcher = NotificationFetcher(client, business_ids={BUSINESS})
        # The share by default: half the client's bucket, its rate and its burst.
        whole = (limits or DEFAULT_LIMITS)["get_chat_message"]
        burst = math.floor(whole.effective_burst * DEFAULT_FETCH_SHARE)
        per_second = whole.amount / whole.period_seconds * DEFAULT_FETCH_SHARE

        async def on_event(event: Notification) -> None:
            assert isinstance(event, ChatMessageSentNotification)
            try:
                await fetcher.fetch_message(event)
            except (FetchLimitError, NotFoundError):
                pass  # over the share; or fetched, and (forged) not found
            finally:
                decided.check()

        app = web.Application()
        receiver = add_notification_route(
            app,
            "/{secret}/notification",
            on_event,
            name=NAME,
            version=VERSION,
            secret=SECRET,
            business_ids={BUSINESS},
        )
        chat = fake.market.chats(BUSINESS)[0]
        async with serve(app) as base:
            notifier = fake.notify_to(f"{base}/{SECRET}/notification")
            started = time.monotonic()
            for number in range(FORGED):
                notifier.send_soon(forged_message(number, chat.chat_id))
            await asyncio.wait_for(notifier.wait_idle(), 30)
            await asyncio.wait_for(decided.all_in.wait(), 10)
            elapsed = time.monotonic() - started

            # Market's answers are today's: every forgery authenticated and new.
            assert [d.status for d in notifier.deliveries] == [200] * FORGED
            assert receiver.counts["accepted"] == FORGED

            # The user's own call, right after, finds the reserve untouched.
            mine = client.with_options(max_wait=10)
            message = await mine.get_chat_message(BUSINESS, chat.chat_id, chat.first_message_id)
            assert message.message_id == chat.first_message_id

        # The fetcher drew no more than its share: its burst, and what its
        # rate refilled while the flood came in; the rest it refused.
        drawn = fetcher.fetched[BUSINESS]
        assert burst <= drawn <= burst + math.floor(elapsed * per_second)
        assert fetcher.refused[BUSINESS] == FORGED - drawn
        assert len(fake.journal.entries("get_chat_message")) == drawn + 1
        # Every fetch, and the user's call, went through without a 420. (They may
        # wait a moment for one of the business's 4 parallel slots: not for quota.)
        operations = client.stats.snapshot().operations
        [stats] = [op for op in operations if op.method == "get_chat_message"]
        assert stats.calls == drawn + 1
        assert stats.rate_limited_quota + stats.rate_limited_parallel == 0


# -- the share, from the client's own limits ---------------------------------------------


def created_event(chat_id: int) -> ChatCreatedNotification:
    event = decode_notification(
        json.dumps(
            {
                "notificationType": "CHAT_CREATED",
                "businessId": BUSINESS,
                "chatId": chat_id,
                "createdAt": "2025-03-01T12:00:00Z",
            }
        )
    )
    assert isinstance(event, ChatCreatedNotification)
    return event


def test_the_share_is_of_the_clients_own_limit_for_each_method() -> None:
    client = ChatsClient(api_key="key", base_url="http://127.0.0.1:1")
    fetcher = NotificationFetcher(client, business_ids=[BUSINESS])
    # Half of 1,000 an hour with a burst of 17: the other 9 and 500 are the reserve.
    assert fetcher.share == DEFAULT_FETCH_SHARE == 0.5
    assert dict(fetcher.limits) == {
        "get_chat": RateLimit(500, 3600.0, burst=8),
        "get_chat_message": RateLimit(500, 3600.0, burst=8),
    }
    overridden = ChatsClient(
        api_key="key",
        base_url="http://127.0.0.1:1",
        limits={"get_chat_message": RateLimit(5, 3600.0, burst=5), "get_chat": None},
    )
    fetcher = NotificationFetcher(overridden, business_ids=[BUSINESS], share=0.3)
    # 1.5 an hour is 5 per 12,000 s; no client bucket for get_chat: the API's own quota.
    assert fetcher.limits["get_chat_message"] == RateLimit(5, 12_000.0, burst=1)
    assert fetcher.limits["get_chat"] == RateLimit(300, 3600.0, burst=5)
    # However close to 1 the share, the reserve keeps a request of burst and some rate.
    nearly_all = NotificationFetcher(overridden, business_ids=[BUSINESS], share=1 - 1e-12)
    assert nearly_all.limits["get_chat_message"].effective_burst == 4
    assert nearly_all.limits["get_chat_message"].period_seconds > 3600.0
    # A view shares its client's buckets, so it has the same share.
    view = overridden.with_options(max_wait=5)
    assert NotificationFetcher(view, business_ids=[BUSINESS], share=0.3).limits == fetcher.limits
    assert "share=0.3" in repr(fetcher)


async def test_a_redis_backed_client_gives_its_limiters_limits() -> None:
    pytest.importorskip("redis")
    from yamarket_chats.redis_limits import RedisLimiter

    limiter = RedisLimiter(  # never connected: reading the limits needs no Redis
        "redis://127.0.0.1:1", limits={"get_chat_message": RateLimit(100, 3600.0, burst=10)}
    )
    try:
        client = ChatsClient(api_key="key", base_url="http://127.0.0.1:1", limiter=limiter)
        fetcher = NotificationFetcher(client, business_ids=[BUSINESS])
        assert fetcher.limits["get_chat_message"] == RateLimit(50, 3600.0, burst=5)
        assert fetcher.limits["get_chat"] == RateLimit(500, 3600.0, burst=8)
    finally:
        await limiter.close()


@pytest.mark.parametrize(
    ("share", "message"),
    [
        (0, "share must be a number greater than 0 and less than 1"),
        (1, r"less than 1 \(the rest of each method's bucket is the reserve.*got 1$"),
        (1.5, "got 1.5"),
        (float("nan"), "got nan"),
        (True, "got True"),
        ("0.5", "got a value of type str"),
        (10**400, "got a value of type int"),
        # Less than one request of the 17 of the default burst.
        (0.05, r"share must be at least 1/17 with this client's get_chat limit .*got 0.05"),
    ],
)
def test_share_is_validated_naming_its_limit(share: Any, message: str) -> None:
    client = ChatsClient(api_key="key", base_url="http://127.0.0.1:1")
    with pytest.raises(InvalidRequestError, match=message):
        NotificationFetcher(client, business_ids=[BUSINESS], share=share)
    with pytest.raises(InvalidRequestError, match="rate must be a RateLimit or None"):
        NotificationFetcher(client, business_ids=[BUSINESS], rate=500)  # type: ignore[arg-type]
    assert NotificationFetcher(client, business_ids=[BUSINESS], share=1 / 17).limits[
        "get_chat"
    ] == RateLimit(1000, 3600.0 * 17, burst=1)


async def test_each_method_has_its_own_share_and_rate_none_turns_the_overall_cap_off(
    fake: FakeServer, client: ChatsClient
) -> None:
    fetcher = NotificationFetcher(client, business_ids=[BUSINESS], rate=None)
    chat = fake.market.chats(BUSINESS)[0]
    for _ in range(8):
        await fetcher.fetch_chat(created_event(chat.chat_id))
    started = time.monotonic()
    with pytest.raises(FetchLimitError) as info:
        await fetcher.fetch_chat(created_event(chat.chat_id))
    assert time.monotonic() - started < 0.5  # refused at once, not queued
    assert (info.value.business_id, info.value.method) == (BUSINESS, "get_chat")
    assert info.value.rate == fetcher.limits["get_chat"]
    assert str(info.value) == (
        f"business {BUSINESS}: the notification fetch cap of get_chat (500 per 3600 s,"
        " burst 8: its share of the client's bucket) is spent; no request was sent"
    )
    # get_chat_message has a bucket of its own at the client, and so a share of its own.
    message = ChatMessageSentNotification(
        chat_id=chat.chat_id,
        raw_message_id=str(chat.first_message_id),
        business_id=BUSINESS,
        sent_at=created_event(chat.chat_id).created_at,
    )
    assert (await fetcher.fetch_message(message)).message_id == chat.first_message_id
    assert fetcher.fetched == {BUSINESS: 9} and fetcher.refused == {BUSINESS: 1}
    assert len(fake.journal.entries("get_chat")) == 8
    # The client's own get_chat still has its reserve: 9 more without a wait.
    for _ in range(9):
        await client.with_options(max_wait=0.5).get_chat(BUSINESS, chat.chat_id)


async def test_max_wait_waits_for_the_share_and_refuses_past_it() -> None:
    tiny = ChatsClient(
        api_key="key",
        base_url="http://127.0.0.1:1",
        limits={"get_chat": RateLimit(2, 0.2, burst=2)},  # a share of 1 per 0.2 s
    )
    fetcher = NotificationFetcher(tiny, business_ids=[BUSINESS], rate=None, max_wait=2)
    assert fetcher.limits["get_chat"] == RateLimit(1, 0.2, burst=1)
    await fetcher._take(BUSINESS, "get_chat")
    started = time.monotonic()
    await fetcher._take(BUSINESS, "get_chat")  # the share refills within max_wait
    assert 0.1 < time.monotonic() - started < 2
    fetcher.max_wait = 0.05
    with pytest.raises(FetchLimitError) as info:
        await fetcher._take(BUSINESS, "get_chat")
    assert info.value.method == "get_chat"
    assert fetcher.fetched == {BUSINESS: 2} and fetcher.refused == {BUSINESS: 1}
