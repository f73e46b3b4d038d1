"""Notifications into a sink (`into_sink`): stored within seconds, and a later sync loses
and duplicates nothing, the receiver SIGKILLed between the notification and the sync."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSINESS
from tests.test_notifications import Inbox, receiver_app
from tests.waiting import until
from yamarket_chats import ChatsClient, InvalidRequestError, RateLimit
from yamarket_chats.desk import waiting_chats
from yamarket_chats.ingest import sync
from yamarket_chats.notifications import NotificationFetcher, into_sink
from yamarket_chats.sinks import JsonlSink, SQLiteSink
from yamarket_chats.testing import FakeNotifier, FakeServer

BUSINESSES = (BUSINESS, 2002)  # the `fake` fixture: 5 chats x 230 messages each
ROOT = Path(__file__).resolve().parent.parent


def sqlite_rows(path: Path) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """The messages stored, (chat, message) sorted, and each chat's status."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        messages = conn.execute("SELECT chat_id, message_id FROM messages ORDER BY 1, 2")
        statuses = dict(conn.execute("SELECT chat_id, status FROM chats").fetchall())
        return [tuple(r) for r in messages.fetchall()], statuses  # type: ignore[misc]


def fake_rows(fake: FakeServer) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """What a sink must hold once synced: every message of the fake once, and its statuses."""
    messages, statuses = [], {}
    for b in BUSINESSES:
        for chat in fake.market.chats(b):
            statuses[chat.chat_id] = chat.status
            messages += [
                (chat.chat_id, m.message_id) for m in fake.market.messages(b, chat.chat_id)
            ]
    return sorted(messages), statuses


def answered(notifier: FakeNotifier) -> int:
    return sum(d.status == 200 for d in notifier.deliveries)


async def test_events_land_within_seconds_and_the_next_sync_misses_nothing(
    fake: FakeServer, client: ChatsClient, tmp_path: Path
) -> None:
    path = tmp_path / "chats.db"
    stored = Inbox()  # called by into_sink once an event is stored
    async with SQLiteSink(path) as sink:
        await sync(client, BUSINESSES, sink)
        chat = fake.market.chats(BUSINESS)[1]
        before = (await sink.load_state(BUSINESS))[chat.chat_id]
        fetcher = NotificationFetcher(client, business_ids=BUSINESSES)
        async with receiver_app(into_sink(sink, fetcher, then=stored)) as (url, _):
            fake.notify_to(url)
            # Messages the sync has not seen: the last one arrives by notification.
            missed = [fake.market.add_message(BUSINESS, chat.chat_id, f"m{i}") for i in range(3)]
            await stored.wait_for(3)
            new_chat = fake.market.add_chat(2002, messages=4, status="NEW")
            await stored.wait_for(4)
            messages, statuses = sqlite_rows(path)
            assert {(chat.chat_id, m) for m in missed} <= set(messages)
            assert statuses[chat.chat_id] == "WAITING_FOR_PARTNER"  # the chat came along
            assert statuses[new_chat] == "NEW"
            queue = {c.chat_id: c for c in await waiting_chats(sink)}
            assert queue[chat.chat_id].last_message == "m2"
            assert new_chat in queue
            # The checkpoint has not moved.
            assert (await sink.load_state(BUSINESS))[chat.chat_id] == before

            await client.send_message_to_chat(BUSINESS, chat.chat_id, "Ответ")
            await stored.wait_for(5)
            assert sqlite_rows(path)[1][chat.chat_id] == "WAITING_FOR_CUSTOMER"
            assert chat.chat_id not in {c.chat_id for c in await waiting_chats(sink)}

        fake.journal.clear()
        await sync(client, BUSINESSES, sink)
        # The walk started after the sync's own last message, not the notified one.
        walk = fake.journal.entries("get_chat_history", business_id=BUSINESS)
        starts = [
            e.body.get("messageIdFrom") for e in walk if int(e.query["chatId"]) == chat.chat_id
        ]
        assert starts[0] == before.last_message_id + 1
    assert sqlite_rows(path) == fake_rows(fake)


async def test_a_spent_fetch_cap_leaves_the_event_to_the_next_sync(
    fake: FakeServer, client: ChatsClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chats.db"
    stored = Inbox()
    async with SQLiteSink(path) as sink:
        await sync(client, BUSINESSES, sink)
        fetcher = NotificationFetcher(
            client, business_ids=BUSINESSES, rate=RateLimit(1, 3600, burst=1)
        )
        chat = fake.market.chats(BUSINESS)[0]
        async with receiver_app(into_sink(sink, fetcher, then=stored)) as (url, _):
            fake.notify_to(url)
            with caplog.at_level(logging.WARNING, "yamarket_chats.notifications"):
                first = fake.market.add_message(BUSINESS, chat.chat_id, "one")
                second = fake.market.add_message(BUSINESS, chat.chat_id, "two")
                await stored.wait_for(2)
        messages, _ = sqlite_rows(path)
        assert (chat.chat_id, first) in messages  # the cap's one token
        assert (chat.chat_id, second) not in messages
        assert "is left to the next sync" in caplog.text
        await sync(client, BUSINESSES, sink)
    assert sqlite_rows(path) == fake_rows(fake)


async def test_a_sink_that_cannot_store_a_message_alone_is_refused(
    client: ChatsClient, tmp_path: Path
) -> None:
    fetcher = NotificationFetcher(client, business_ids=BUSINESSES)
    async with JsonlSink(tmp_path / "chats.jsonl") as jsonl:
        with pytest.raises(InvalidRequestError, match="a JsonlSink cannot"):
            into_sink(jsonl, fetcher)  # type: ignore[arg-type]
    async with SQLiteSink(tmp_path / "chats.db") as sink:
        with pytest.raises(InvalidRequestError, match="then must be an async callable"):
            into_sink(sink, fetcher, then="no")  # type: ignore[arg-type]


async def start_receiver(fake: FakeServer, target: list[str]) -> tuple[Any, str]:
    args = [sys.executable, "-m", "tests.notify_receiver", fake.url, fake.api_key, *target]
    args += [arg for b in BUSINESSES for arg in ("--business", str(b))]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"http://"), (await proc.communicate())[1].decode()
    return proc, line.decode().strip()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sigkills_between_notifications_and_the_sync_lose_and_duplicate_nothing(
    fake: FakeServer,
    client: ChatsClient,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """Each round: a receiver process stores events, is SIGKILLed at a random point
    (mid-callback included), and only every other round does a sync follow."""
    rng = random.Random(20)
    chats = [c.chat_id for b in BUSINESSES for c in fake.market.chats(b)]
    owner = {c.chat_id: b for b in BUSINESSES for c in fake.market.chats(b)}
    if backend == "sqlite":
        path = tmp_path / "chats.db"
        target = ["--db", str(path)]
        make_sink: Callable[[], Any] = lambda: SQLiteSink(path, lock_timeout=30)  # noqa: E731
    else:
        from yamarket_chats.sinks import PostgresSink

        pg_url = request.getfixturevalue("pg_url")
        target = ["--postgres-url", pg_url]
        make_sink = lambda: PostgresSink(pg_url)  # noqa: E731
    async with make_sink() as sink:
        await sync(client, BUSINESSES, sink)
    kills = 0
    for round_ in range(6):
        proc, url = await start_receiver(fake, target)
        notifier = fake.notify_to(url)
        events = rng.randrange(3, 12)
        for _ in range(events):
            chat_id = rng.choice(chats)
            if rng.random() < 0.3:
                await client.send_message_to_chat(owner[chat_id], chat_id, f"r{round_}")
            else:
                fake.market.add_message(owner[chat_id], chat_id, f"q{round_}")
        if rng.random() < 0.3:
            new = fake.market.add_chat(BUSINESS, messages=rng.randrange(0, 5))
            chats.append(new)
            owner[new] = BUSINESS
        kill_after = rng.randrange(0, events + 1)
        await until(lambda n=notifier, k=kill_after: answered(n) >= k, "deliveries")  # type: ignore[misc]
        proc.kill()  # SIGKILL: maybe mid-callback, maybe before some events were posted
        await proc.wait()
        kills += 1
        await fake.stop_notifying(timeout=5)
        if round_ % 2:
            async with make_sink() as sink:
                await sync(client, BUSINESSES, sink)
                if backend == "sqlite":
                    assert sqlite_rows(path) == fake_rows(fake)
    async with make_sink() as sink:
        await sync(client, BUSINESSES, sink)
        if backend == "postgres":
            rows = await sink.query(
                "SELECT chat_id, message_id FROM yamarket_chats.messages ORDER BY 1, 2",
                fetch="all",
            )
            chats_now = await sink.query(
                "SELECT chat_id, status FROM yamarket_chats.chats", fetch="all"
            )
            stored = ([tuple(r) for r in rows], {r[0]: r[1] for r in chats_now})
    if backend == "sqlite":
        stored = sqlite_rows(path)
    assert kills == 6
    assert stored == fake_rows(fake)
