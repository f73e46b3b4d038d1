"""`yamarket_chats.desk`: the reply-due queue and `read_chat`, over SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import BUSINESS
from yamarket_chats import ChatMessage, ChatsClient, InvalidRequestError, NotFoundError
from yamarket_chats.desk import WAITING_STATUSES, WaitingChat, read_chat, waiting_chats
from yamarket_chats.ingest import sync
from yamarket_chats.sinks import JsonlSink, SQLiteSink
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

# Statuses cycle through the six, so every kind of chat is present, with
# senders that give chats answered, unanswered and never answered.
CONFIG = FakeMarketConfig(businesses=(BUSINESS, 2002), chats_per_business=12, messages_per_chat=9)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with run_fake_server(CONFIG) as server:
        server.market.add_chat(BUSINESS, context_type="DIRECT")  # NEW, no message yet
        unanswered = server.market.add_chat(2002, status="NEW")
        for text in ("Hello?", "Anyone?"):  # asked twice, never answered
            server.market.add_message(2002, unanswered, text)
        yield server


def expected_queue(fake: FakeServer, businesses: tuple[int, ...] = (BUSINESS, 2002)) -> list[Any]:
    """The queue from the fake's own state, walking each chat's messages backwards."""
    rows = []
    for b in businesses:
        for chat in fake.market.chats(b):
            if chat.status not in ("NEW", "WAITING_FOR_PARTNER"):
                continue
            messages = list(fake.market.messages(b, chat.chat_id))
            since = chat.created_at
            for i in range(len(messages) - 1, -1, -1):
                if messages[i].sender == "PARTNER":
                    since = messages[i].created_at
                    after = [m for m in messages[i + 1 :] if m.sender == "CUSTOMER"]
                    since = after[0].created_at if after else since
                    break
            else:
                customers = [m for m in messages if m.sender == "CUSTOMER"]
                since = customers[0].created_at if customers else chat.created_at
            rows.append((since, b, chat.chat_id, chat.status))
    return sorted(rows)


def as_rows(queue: list[WaitingChat]) -> list[Any]:
    return [(c.waiting_since, c.business_id, c.chat_id, c.status) for c in queue]


@pytest_asyncio.fixture
async def synced(fake: FakeServer, client: ChatsClient, tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "chats.db"
    async with SQLiteSink(path) as sink:
        await sync(client, [BUSINESS, 2002], sink)
    yield path


async def test_the_queue_is_exactly_the_waiting_chats_oldest_first(
    fake: FakeServer, synced: Path
) -> None:
    queue = await waiting_chats(synced)
    assert as_rows(queue) == expected_queue(fake)
    assert {c.status for c in queue} == set(WAITING_STATUSES)  # both kinds present
    # Every kind of wait is covered: never answered, answered then asked again.
    kinds = set()
    for c in queue:
        senders = [m.sender for m in fake.market.messages(c.business_id, c.chat_id)]
        kinds.add("answered" if "PARTNER" in senders else "asked" if senders else "empty")
    assert kinds == {"answered", "asked", "empty"}
    first = queue[0]
    chat = fake.market.get_chat(first.business_id, first.chat_id)
    customer = [m for m in fake.market.messages(first.business_id, first.chat_id)
                if m.sender == "CUSTOMER"][-1]  # fmt: skip
    assert (first.last_message_id, first.last_message_at) == (customer.message_id,
                                                              customer.created_at)  # fmt: skip
    assert first.last_message == customer.message
    assert first.customer_name == chat.customer_name
    assert (first.order_id, first.context_type) == (chat.order_id, chat.context_type)


async def test_a_reply_takes_the_chat_out_and_a_customer_message_puts_it_back(
    fake: FakeServer, client: ChatsClient, synced: Path
) -> None:
    first = (await waiting_chats(synced))[0]
    await client.send_message_to_chat(first.business_id, first.chat_id, "Answered")
    assert fake.market.get_chat(first.business_id, first.chat_id).status == "WAITING_FOR_CUSTOMER"
    assert first.chat_id in {c.chat_id for c in await waiting_chats(synced)}  # until a sync
    async with SQLiteSink(synced) as sink:
        await sync(client, [BUSINESS, 2002], sink)
    assert first.chat_id not in {c.chat_id for c in await waiting_chats(synced)}
    assert as_rows(await waiting_chats(synced)) == expected_queue(fake)

    asked = fake.market.add_message(first.business_id, first.chat_id, "And now?")
    assert fake.market.get_chat(first.business_id, first.chat_id).status == "WAITING_FOR_PARTNER"
    async with SQLiteSink(synced) as sink:
        await sync(client, [BUSINESS, 2002], sink)
    queue = await waiting_chats(synced)
    back = next(c for c in queue if c.chat_id == first.chat_id)
    message = fake.market.get_message(first.business_id, first.chat_id, asked)
    assert (back.waiting_since, back.last_message) == (message.created_at, "And now?")
    assert back.waiting_since == max(c.waiting_since for c in queue)  # the newest wait
    assert as_rows(queue) == expected_queue(fake)


async def test_filters_by_age_and_business(synced: Path, fake: FakeServer) -> None:
    queue = await waiting_chats(synced)
    middle = queue[len(queue) // 2].waiting_since
    now = middle + dt.timedelta(hours=2)
    older = await waiting_chats(synced, older_than=dt.timedelta(hours=2), now=now)
    assert older == [c for c in queue if c.waiting_since <= middle]
    assert await waiting_chats(synced, older_than=7200.0, now=now) == older
    assert await waiting_chats(synced, business_ids=[2002]) == [
        c for c in queue if c.business_id == 2002
    ]
    assert await waiting_chats(synced, business_ids=[]) == []
    assert await waiting_chats(synced, business_ids=[999]) == []
    assert queue[0].waited(now) == now - queue[0].waiting_since


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"older_than": -1}, r"older_than must be 0\.\.3153600000 seconds"),
        ({"older_than": float("nan")}, "older_than must be 0.*got nan"),
        ({"older_than": "2h"}, "older_than must be seconds or a timedelta"),
        ({"business_ids": "1001"}, "business_ids must be a collection"),
        ({"business_ids": [0]}, "business_ids"),
    ],
)
async def test_bad_arguments_are_named(synced: Path, kwargs: Any, named: str) -> None:
    with pytest.raises(InvalidRequestError, match=named):
        await waiting_chats(synced, **kwargs)


async def test_sources_that_cannot_answer_are_refused(tmp_path: Path) -> None:
    async with JsonlSink(tmp_path / "chats.jsonl") as jsonl:
        with pytest.raises(InvalidRequestError, match=r"JSON Lines file \(JsonlSink\) cannot"):
            await waiting_chats(jsonl)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="no such SQLite database"):
        await waiting_chats(tmp_path / "missing.db")
    (tmp_path / "chats.jsonl").write_text('{"kind":"chat"}\n' * 100)
    with pytest.raises(InvalidRequestError, match="not a yamarket-chats SQLite database"):
        await waiting_chats(tmp_path / "chats.jsonl")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(InvalidRequestError, match="no such table: chats"):
        await waiting_chats(tmp_path / "other.db")
    with pytest.raises(InvalidRequestError, match="the desk reads a SQLite file"):
        await waiting_chats(object())  # type: ignore[arg-type]


async def test_reads_beside_a_running_sync_without_its_lock(
    fake: FakeServer, client: ChatsClient, synced: Path
) -> None:
    """The path is read while a sync holds the sink; an open sink is read through it."""
    async with SQLiteSink(synced) as sink:  # holds the lock
        by_path = await waiting_chats(synced)
        through_sink = await waiting_chats(sink)
        assert by_path == through_sink == await waiting_chats(synced)
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
            await sink.query("DELETE FROM chats")
        await sync(client, [BUSINESS], sink)  # still writable afterwards
    assert as_rows(by_path) == expected_queue(fake)


async def test_read_chat_completes_the_sink_through_the_client(
    fake: FakeServer, client: ChatsClient, synced: Path
) -> None:
    chat = fake.market.chats(BUSINESS)[0]
    fake.journal.clear()
    view = await read_chat(synced, client, BUSINESS, chat.chat_id, limit=5)
    expected = list(fake.market.messages(BUSINESS, chat.chat_id))
    assert [m.message_id for m in view.messages] == [m.message_id for m in expected[-5:]]
    assert (view.stored, view.fetched, view.earlier) == (5, 0, True)
    assert view.status == chat.status and view.order_id == chat.order_id
    assert [e.operation for e in fake.journal] == ["get_chat_history"]  # current: one request

    new = [fake.market.add_message(BUSINESS, chat.chat_id, f"new {i}") for i in range(3)]
    view = await read_chat(synced, client, BUSINESS, chat.chat_id, limit=5)
    assert [m.message_id for m in view.messages][-3:] == new
    assert (view.stored, view.fetched) == (2, 3)
    assert [m.message for m in view.messages][-3:] == ["new 0", "new 1", "new 2"]
    # The sink is not written: the next sync still stores them.
    assert (await read_chat(synced, client, BUSINESS, chat.chat_id, limit=5)).fetched == 3


async def test_read_chat_of_a_chat_the_sink_lacks(
    fake: FakeServer, client: ChatsClient, synced: Path
) -> None:
    chat_id = fake.market.add_chat(BUSINESS, messages=7, status="WAITING_FOR_PARTNER")
    view = await read_chat(synced, client, BUSINESS, chat_id, limit=50)
    assert [m.message_id for m in view.messages] == [
        m.message_id for m in fake.market.messages(BUSINESS, chat_id)
    ]
    assert (view.stored, view.fetched, view.earlier) == (0, 7, False)
    assert view.status == "WAITING_FOR_PARTNER"
    view = await read_chat(synced, client, BUSINESS, chat_id, limit=3)
    assert (len(view.messages), view.earlier) == (3, True)
    with pytest.raises(NotFoundError):
        await read_chat(synced, client, BUSINESS, 999_999_999)
    with pytest.raises(InvalidRequestError, match=r"limit must be an integer 1\.\.500"):
        await read_chat(synced, client, BUSINESS, chat_id, limit=0)
    with pytest.raises(InvalidRequestError, match="chat_id"):
        await read_chat(synced, client, BUSINESS, -1)


async def test_the_fake_moves_statuses_as_the_api_does(fake: FakeServer) -> None:
    chat_id = fake.market.add_chat(BUSINESS)
    chat = fake.market.get_chat(BUSINESS, chat_id)
    assert chat.status == "NEW"
    fake.market.add_message(BUSINESS, chat_id, "hi")
    assert chat.status == "WAITING_FOR_PARTNER"
    fake.market.add_message(BUSINESS, chat_id, "hello", sender="PARTNER")
    assert chat.status == "WAITING_FOR_CUSTOMER"
    fake.market.add_message(BUSINESS, chat_id, "note", sender="MARKET")
    assert chat.status == "WAITING_FOR_CUSTOMER"
    chat.status = "FINISHED"  # a finished chat (or a dispute's) keeps its status
    fake.market.add_message(BUSINESS, chat_id, "one more thing")
    assert chat.status == "FINISHED"


async def test_postgres_gives_the_same_queue_and_chats(
    fake: FakeServer, client: ChatsClient, synced: Path, pg_url: str
) -> None:
    from yamarket_chats.sinks import PostgresSink

    async with PostgresSink(pg_url) as sink:
        await sync(client, [BUSINESS, 2002], sink)
        queue = await waiting_chats(sink)
        assert as_rows(queue) == expected_queue(fake)
        assert queue == await waiting_chats(synced)  # times equal, in UTC here
        assert queue[0].waiting_since.utcoffset() == dt.timedelta(0)
        assert await waiting_chats(sink, business_ids=[2002]) == [
            c for c in queue if c.business_id == 2002
        ]
        chat = queue[0]
        from_pg = await read_chat(sink, client, chat.business_id, chat.chat_id, limit=4)
        from_file = await read_chat(synced, client, chat.business_id, chat.chat_id, limit=4)
        assert from_pg == from_file
        assert from_pg.stored == 4


async def test_read_chat_fills_the_gap_a_notification_left(
    fake: FakeServer, client: ChatsClient, synced: Path
) -> None:
    """A message stored past the sync's checkpoint (a notification's) does not hide the
    messages before it: the API is read from the checkpoint on."""
    chat = fake.market.chats(BUSINESS)[0]
    ids = [fake.market.add_message(BUSINESS, chat.chat_id, f"buyer {i}") for i in range(3)]
    async with SQLiteSink(synced) as sink:
        last = fake.market.get_message(BUSINESS, chat.chat_id, ids[-1])
        message = ChatMessage(message_id=last.message_id, created_at=last.created_at,
                              sender=last.sender, message=last.message)  # fmt: skip
        await sink.save_messages(BUSINESS, chat.chat_id, [message])
    view = await read_chat(synced, client, BUSINESS, chat.chat_id, limit=4)
    assert [m.message for m in view.messages][-3:] == ["buyer 0", "buyer 1", "buyer 2"]
    assert (view.stored, view.fetched) == (2, 2)  # buyer 2 was stored, 0 and 1 were not


async def test_a_subclass_of_a_sink_is_read_and_arguments_are_named(
    synced: Path, tmp_path: Path
) -> None:
    class MySink(SQLiteSink):
        pass

    async with MySink(synced) as mine:
        assert await waiting_chats(mine) == await waiting_chats(synced)
    with pytest.raises(InvalidRequestError, match=r"older_than must be 0\.\.3153600000 seconds"):
        await waiting_chats(synced, older_than=dt.timedelta(days=10**6))
    with pytest.raises(InvalidRequestError, match="now must be an aware datetime"):
        await waiting_chats(synced, older_than=60, now=dt.datetime(2026, 1, 1))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_older_listing_never_replaces_a_newer_chat(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """A sync's listing that left before a notification's fresher chat was stored."""
    from yamarket_chats import Chat
    from yamarket_chats.models import ChatFullContext

    def chat(status: str, minute: int, offset: int) -> Chat:
        zone = dt.timezone(dt.timedelta(hours=offset))
        when = dt.datetime(2026, 5, 1, 12, minute, tzinfo=dt.timezone.utc).astimezone(zone)
        return Chat(chat_id=77, type="CHAT", status=status, created_at=when, updated_at=when,
                    context=ChatFullContext(type="DIRECT"))  # fmt: skip

    if backend == "sqlite":
        sink: Any = SQLiteSink(tmp_path / "c.db")
    else:
        from yamarket_chats.sinks import PostgresSink

        sink = PostgresSink(request.getfixturevalue("pg_url"))
    async with sink:
        await sink.save_chats(BUSINESS, [chat("WAITING_FOR_CUSTOMER", 5, 3)])  # the notification's
        await sink.save_chats(BUSINESS, [chat("WAITING_FOR_PARTNER", 4, 0)])  # older, other offset
        assert await waiting_chats(sink) == []
        await sink.save_chats(BUSINESS, [chat("WAITING_FOR_PARTNER", 6, 0)])  # newer: it goes in
        assert [c.chat_id for c in await waiting_chats(sink)] == [77]
