"""Limits, retries, cancellation and iterators, against the fake over loopback.

Quotas are scaled from hours to seconds (windows of 2 s) so that the same
mechanisms run in a few seconds; the tests that cross quota windows run on a
virtual clock (`with_fake_on_virtual_time`) and take no time waiting.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import BUSINESS, FAST
from tests.virtual_clock import VirtualClock, with_fake_on_virtual_time
from yamarket_chats import (
    ChatsClient,
    PaginationError,
    RateLimit,
    ServerError,
    TransportError,
    YandexMarketError,
)
from yamarket_chats.testing import FakeMarketConfig, FakeServer

WINDOW = 2.0
#: The window of the tests on virtual time: waits cost nothing there, and the
#: one-second resolution of ``Date`` and ``-Until`` is small beside it.
V_WINDOW = 30.0


def scaled(
    *, chats: int = 1, messages: int = 10, window: float = WINDOW, **quotas: int
) -> FakeMarketConfig:
    """One business with quotas per `window` (2 s) instead of per hour."""
    return FakeMarketConfig(
        businesses=(BUSINESS,),
        chats_per_business=chats,
        messages_per_chat=messages,
        quota_window=window,
        quotas=quotas,
    )


async def spend_window(fake: FakeServer, path: str, method: str = "GET") -> None:
    """Play another process on the same cabinet: request until the fake says 420."""
    async with aiohttp.ClientSession(headers={"Api-Key": fake.api_key}) as http:
        while True:
            async with http.request(method, fake.url + path, json={}) as resp:
                if resp.status == 420:
                    return


def history_ids(fake: FakeServer, chat_id: int) -> list[int]:
    return [m.message_id for m in fake.market.messages(BUSINESS, chat_id)]


def statuses(fake: FakeServer, operation: str | None = None) -> list[int | None]:
    return [e.status for e in fake.journal.entries(operation)]


async def test_fifty_tasks_never_exceed_four_in_flight(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(limits={"get_chat": None})  # the cap alone, no bucket
    fake.faults.add("latency", delay=0.02)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    await asyncio.gather(*(client.get_chat(BUSINESS, chat_id) for _ in range(50)))
    assert statuses(fake) == [200] * 50
    assert fake.peak_parallel[BUSINESS] == 4


async def test_a_second_business_has_its_own_slots(fake: FakeServer, client: ChatsClient) -> None:
    a = fake.market.chats(BUSINESS)[0].chat_id
    b = fake.market.chats(2002)[0].chat_id
    fake.faults.add("latency", delay=2.0, times=4)
    stuck = [asyncio.create_task(client.get_chat(BUSINESS, a)) for _ in range(4)]
    await fake.wait_in_flight(BUSINESS, 4)  # every slot of the first business is taken
    await asyncio.wait_for(asyncio.gather(*(client.get_chat(2002, b) for _ in range(4))), 1.0)
    assert not any(task.done() for task in stuck)
    assert statuses(fake, "get_chat")[-4:] == [200] * 4  # the second business's, done
    await asyncio.gather(*stuck)


def test_limits_equal_to_quota_use_it_without_420() -> None:
    windows = 3

    async def body(fake: FakeServer, client: ChatsClient, loop: VirtualClock) -> None:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        await client.get_chat(BUSINESS, chat_id)
        loop.now = (loop.now // V_WINDOW + 1) * V_WINDOW  # a fresh window boundary
        fake.journal.clear()
        deadline = loop.time() + windows * V_WINDOW
        served_in_time = 0

        async def worker() -> None:
            nonlocal served_in_time
            while loop.time() < deadline:
                await client.get_chat(BUSINESS, chat_id)
                served_in_time += loop.time() <= deadline  # one may end past it

        await asyncio.gather(*(worker() for _ in range(8)))
        assert 420 not in statuses(fake)
        assert served_in_time >= 0.9 * windows * 24, served_in_time

    config = scaled(get_chat=24, chats=2, messages=20, window=V_WINDOW)
    with_fake_on_virtual_time(config, body, limits={"get_chat": RateLimit(24, V_WINDOW)})


def test_server_quota_lower_than_buckets_is_learned() -> None:
    async def body(fake: FakeServer, client: ChatsClient, loop: VirtualClock) -> None:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        await client.get_chat(BUSINESS, chat_id)
        await asyncio.gather(*(client.get_chat(BUSINESS, chat_id) for _ in range(25)))
        assert statuses(fake).count(200) == 26
        assert 420 not in statuses(fake)
        assert client.stats.waited_seconds > 0

    # The client believes in 1,000 per window; the server allows 10.
    limits = {"get_chat": RateLimit(1000, V_WINDOW)}
    with_fake_on_virtual_time(scaled(get_chat=10, window=V_WINDOW), body, limits=limits)


def test_420_from_a_spent_quota_is_waited_out() -> None:
    async def body(fake: FakeServer, client: ChatsClient, loop: VirtualClock) -> None:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        await spend_window(fake, f"/v2/businesses/{BUSINESS}/chat?chatId={chat_id}")
        started = loop.time()
        chat = await client.get_chat(BUSINESS, chat_id)
        assert chat.chat_id == chat_id
        ours = statuses(fake)[6:]
        assert ours == [420, 200]
        assert client.stats.rate_limited == 1
        # It waited for the window's end (-Until), not a second more than its resolution.
        window_end = (started // V_WINDOW + 1) * V_WINDOW
        assert window_end <= loop.time() <= window_end + 1.0

    with_fake_on_virtual_time(scaled(get_chat=5, window=V_WINDOW), body)


async def test_parallel_cap_420_is_retried_with_backoff(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # A client with no cap of its own meets the server's cap of 4.
    client = make_client(max_concurrency=None)
    fake.faults.add("latency", delay=0.05, times=6)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    await asyncio.gather(*(client.get_chat(BUSINESS, chat_id) for _ in range(6)))
    assert statuses(fake).count(200) == 6
    assert statuses(fake).count(420) >= 2


async def test_outage_of_500s_and_drops_is_ridden_out_on_reads(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(max_retries=8)  # the whole outage hits one page
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("status_500", times=2, operations={"get_chat_history"})
    fake.faults.add("drop", times=2, operations={"get_chat_history"})
    fake.faults.add("status_503", times=1, operations={"get_chat_history"})
    fake.faults.add("truncate", times=1, operations={"get_chat_history"})
    got = [m.message_id async for m in client.iter_chat_history(BUSINESS, chat_id)]
    assert got == history_ids(fake, chat_id)
    # (A 2xx that cannot be decoded is no outage: it is raised at once, see
    # tests/test_spec_answers.py.)
    assert client.stats.retries == 6


async def test_send_after_500_reaches_the_fake_exactly_once(
    fake: FakeServer, client: ChatsClient
) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    before = fake.market.message_count(BUSINESS, chat_id)
    fake.faults.add("status_500_after", times=1)
    with pytest.raises(ServerError) as info:
        await client.send_message_to_chat(BUSINESS, chat_id, "once")
    assert info.value.status == 500
    assert statuses(fake, "send_message_to_chat") == [500]
    assert fake.market.message_count(BUSINESS, chat_id) == before + 1


async def test_send_after_dropped_connection_is_not_repeated(
    fake: FakeServer, client: ChatsClient
) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("drop_after", times=1)
    with pytest.raises(TransportError) as info:
        await client.send_message_to_chat(BUSINESS, chat_id, "once")
    assert info.value.__cause__ is not None
    assert len(fake.journal.entries("send_message_to_chat")) == 1


async def test_send_after_a_refused_connection_is_retried(fake: FakeServer) -> None:
    # Nothing listens on the port: the request was certainly never sent.
    async with ChatsClient(api_key="k", base_url="http://127.0.0.1:9", **FAST) as client:
        with pytest.raises(TransportError) as info:
            await client.send_message_to_chat(BUSINESS, 1, "hi")
        assert client.stats.requests == 6  # 1 + max_retries
    assert isinstance(info.value.__cause__, OSError)


async def test_send_rides_out_a_420(fake: FakeServer, client: ChatsClient) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("latency", delay=0.1, times=4, operations={"get_chat"})
    # Four slow reads by "another process" fill the server's parallel cap.
    other = ChatsClient(api_key=fake.api_key, base_url=fake.url)
    async with other:
        reads = [asyncio.create_task(other.get_chat(BUSINESS, chat_id)) for _ in range(4)]
        await fake.wait_in_flight(BUSINESS, 4)
        await client.send_message_to_chat(BUSINESS, chat_id, "after the crowd")
        await asyncio.gather(*reads)
    sends = statuses(fake, "send_message_to_chat")
    assert sends[0] == 420 and sends[-1] == 200 and sends.count(200) == 1


async def test_max_retries_zero_turns_retrying_off(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(max_retries=0)
    fake.faults.add("status_503", times=1)
    with pytest.raises(ServerError):
        await client.get_chat(BUSINESS, fake.market.chats(BUSINESS)[0].chat_id)
    assert len(fake.journal) == 1


async def test_timeout_is_a_transport_error_and_retried(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(timeout=0.2, max_retries=1)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("latency", delay=1.0, times=1)
    assert (await client.get_chat(BUSINESS, chat_id)).chat_id == chat_id
    fake.faults.add("latency", delay=1.0, times=2)
    with pytest.raises(TransportError, match="timed out") as info:
        await client.get_chat(BUSINESS, chat_id)
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)


@pytest.mark.parametrize(
    "fake", [FakeMarketConfig(businesses=(BUSINESS,), max_parallel=None)], indirect=True
)
async def test_cancelling_mid_request_frees_the_slot(fake: FakeServer, client: ChatsClient) -> None:
    # The fake has no cap of its own here: only leaked client slots could block.
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("latency", delay=2.0, times=4)
    stuck = [asyncio.create_task(client.get_chat(BUSINESS, chat_id)) for _ in range(4)]
    await fake.wait_in_flight(BUSINESS, 4)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)
    results = await asyncio.wait_for(
        asyncio.gather(*(client.get_chat(BUSINESS, chat_id) for _ in range(4))), 1.0
    )
    assert all(r.chat_id == chat_id for r in results)


@pytest.mark.parametrize(
    "fake", [FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=1)], indirect=True
)
async def test_a_call_cancelled_before_sending_gives_its_token_back(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # Two tokens, one slot: the second call takes a token, then waits for the
    # slot and is cancelled there. Nothing was sent, so the token comes back.
    client = make_client(max_concurrency=1, limits={"get_chat": RateLimit(2, 3600, burst=2)})
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("latency", delay=0.5, times=1)
    first = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
    await fake.wait_in_flight(BUSINESS, 1)
    second = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
    slot_gates = client._limits._slot_gates  # type: ignore[attr-defined]
    for _ in range(500):  # until it queues for the slot (taking nothing: all or nothing)
        if BUSINESS in slot_gates:
            break
        await asyncio.sleep(0.01)
    assert BUSINESS in slot_gates
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await first
    third = await client.with_options(max_wait=1).get_chat(BUSINESS, chat_id)
    assert third.chat_id == chat_id
    assert statuses(fake) == [200, 200]


@pytest.mark.parametrize(
    "fake", [FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=1)], indirect=True
)
async def test_closing_the_client_ends_its_calls_with_a_clear_error(fake: FakeServer) -> None:
    client = ChatsClient(api_key=fake.api_key, base_url=fake.url, max_concurrency=1, **FAST)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("latency", delay=0.5, times=1)
    running = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
    await fake.wait_in_flight(BUSINESS, 1)
    waiting = asyncio.create_task(client.get_chat(BUSINESS, chat_id))  # for the slot
    await asyncio.sleep(0.05)
    await client.close()  # the app shuts down
    with pytest.raises(TransportError, match="closed during the request"):
        await running
    with pytest.raises(YandexMarketError, match="this ChatsClient is closed"):
        await waiting
    assert [o.failed_calls for o in client.stats.snapshot().operations] == [2]
    with pytest.raises(YandexMarketError, match="this ChatsClient is closed"):
        await client.get_chat(BUSINESS, chat_id)  # (refused before it counts as a call)
    assert client._transport.sessions._fresh is None and client._transport.sessions._pooled is None


async def test_no_unclosed_session_warnings(fake: FakeServer) -> None:
    loop = asyncio.get_running_loop()
    problems: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: problems.append(ctx["message"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with ChatsClient(api_key=fake.api_key, base_url=fake.url) as client:
            await client.get_chat(BUSINESS, fake.market.chats(BUSINESS)[0].chat_id)
        unused = ChatsClient(api_key=fake.api_key, base_url=fake.url)
        del client, unused
        gc.collect()
        await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert not problems
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_history_walk_is_exactly_once_while_messages_arrive(
    fake: FakeServer, client: ChatsClient
) -> None:
    chat_id = fake.market.chats(BUSINESS)[1].chat_id
    seen: list[int] = []
    added: list[int] = []
    async for message in client.iter_chat_history(BUSINESS, chat_id, limit=50):
        seen.append(message.message_id)
        if len(seen) % 60 == 0:
            added.append(fake.market.add_message(BUSINESS, chat_id, "new"))
    assert seen == history_ids(fake, chat_id)
    assert set(added) <= set(seen)
    assert len(seen) == len(set(seen))


async def test_pages_and_resume_from_a_saved_token(fake: FakeServer, client: ChatsClient) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    pages = client.iter_chat_history(BUSINESS, chat_id, limit=100).pages()
    first = await pages.__anext__()
    await pages.aclose()
    assert len(first.messages) == 100 and first.paging and first.paging.next_page_token
    token = first.paging.next_page_token
    rest = [
        m.message_id
        async for m in client.iter_chat_history(BUSINESS, chat_id, limit=100, page_token=token)
    ]
    assert [m.message_id for m in first.messages] + rest == history_ids(fake, chat_id)
    # every page request resends the same body with the token
    bodies = {repr(e.body) for e in fake.journal.entries("get_chat_history")}
    assert len(bodies) == 1


def test_quota_420_mid_walk_retries_the_same_page() -> None:
    async def body(fake: FakeServer, client: ChatsClient, loop: VirtualClock) -> None:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        got: list[int] = []
        async for message in client.iter_chat_history(BUSINESS, chat_id):
            got.append(message.message_id)
            if len(got) == 100:  # another process spends the rest of the window
                path = f"/v2/businesses/{BUSINESS}/chats/history?chatId={chat_id}"
                await spend_window(fake, path, "POST")
        assert got == history_ids(fake, chat_id)
        assert 420 in statuses(fake, "get_chat_history")

    config = scaled(get_chat_history=3, messages=700, window=V_WINDOW)
    with_fake_on_virtual_time(config, body)


async def test_exhausted_retries_carry_the_page_token(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(max_retries=1)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    got: list[int] = []
    with pytest.raises(ServerError) as info:
        async for message in client.iter_chat_history(BUSINESS, chat_id):
            got.append(message.message_id)
            if len(got) == 100:
                fake.faults.add("status_500", times=2)
    token = info.value.page_token
    assert token and len(got) == 100
    got += [
        m.message_id async for m in client.iter_chat_history(BUSINESS, chat_id, page_token=token)
    ]
    assert got == history_ids(fake, chat_id)


async def test_a_repeated_page_token_is_an_error_not_a_loop() -> None:
    # A server that always answers with the same token: the walk must stop.
    async def history(request: web.Request) -> web.Response:
        body = (
            b'{"status":"OK","result":{"context":{"type":"DIRECT"},'
            b'"messages":[],"paging":{"nextPageToken":"same"}}}'
        )
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v2/businesses/{b}/chats/history", history)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ChatsClient(api_key="k", base_url=f"http://127.0.0.1:{port}") as client:
            with pytest.raises(PaginationError) as info:
                async for _ in client.iter_chat_history(BUSINESS, 1):
                    pass
            assert info.value.page_token == "same"
    finally:
        await runner.cleanup()


async def test_a_retry_backing_off_holds_no_slot(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(max_concurrency=1, backoff=1.0, max_backoff=1.0)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("status_500", times=1)
    answered_500 = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.args and record.args[2] == 500:
                answered_500.set()

    logger = logging.getLogger("yamarket_chats")
    watch, level = Watch(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    try:
        first = asyncio.create_task(client.get_chat(BUSINESS, chat_id))
        await asyncio.wait_for(answered_500.wait(), 2.0)
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)
    # the only slot is free while `first` sleeps 0.5..1 s before its retry
    await asyncio.wait_for(client.get_chat(BUSINESS, chat_id), 0.4)
    assert not first.done()
    assert (await first).chat_id == chat_id


def test_5xx_answers_do_not_spend_quota() -> None:
    async def body(fake: FakeServer, client: ChatsClient, loop: VirtualClock) -> None:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        fake.faults.add("status_500", times=5)
        await client.get_chat(BUSINESS, chat_id)  # five 500s, then a 200
        for _ in range(5):
            await client.get_chat(BUSINESS, chat_id)
        assert statuses(fake) == [500] * 5 + [200] * 6
        # neither the bucket nor the server's count was charged for the 500s
        assert client.stats.waited_seconds < 1.0

    limits = {"get_chat": RateLimit(6, V_WINDOW)}
    with_fake_on_virtual_time(
        scaled(get_chat=6, window=V_WINDOW), body, limits=limits, backoff=0.001
    )
