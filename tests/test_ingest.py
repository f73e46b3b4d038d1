"""`yamarket_chats.ingest.sync` into SQLite and JSON Lines, against the fake over loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.conftest import BUSINESS
from yamarket_chats import Chat, ChatMessage, ChatsClient, ServerError
from yamarket_chats.ingest import ChatState, Sink, SyncReport, sync
from yamarket_chats.sinks import JsonlSink, SQLiteSink
from yamarket_chats.testing import FakeServer

BUSINESSES = (BUSINESS, 2002)  # the `fake` fixture: 5 chats x 230 messages each

Rows = tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]


def expected(fake: FakeServer, businesses: Sequence[int] = BUSINESSES) -> Rows:
    """The fake's chats and messages as rows of the SQLite sink's tables."""
    chats, messages = set(), set()
    for b in businesses:
        for c in fake.market.chats(b):
            chats.add(
                (
                    c.chat_id, b, c.order_id, c.type, c.status,
                    c.created_at.isoformat(), c.updated_at.isoformat(), c.context_type,
                    c.customer_name, c.customer_public_id, c.campaign_id,
                    c.order_id, c.return_id,
                )
            )  # fmt: skip
            for m in fake.market.messages(b, c.chat_id):
                payload = msgspec.json.encode(m.payload).decode() if m.payload else None
                messages.add(
                    (
                        c.chat_id, m.message_id, b, m.created_at.isoformat(),
                        m.sender, m.message, payload,
                    )
                )  # fmt: skip
    return chats, messages


def db_rows(path: Path) -> Rows:
    db = sqlite3.connect(path)
    try:
        chats = db.execute("SELECT * FROM chats").fetchall()
        messages = db.execute("SELECT * FROM messages").fetchall()
    finally:
        db.close()
    return set(chats), set(messages)


def jsonl_rows(path: Path) -> Rows:
    """The JSONL file as SQLite-like rows; fails on a duplicated message line."""
    chats: dict[int, tuple[Any, ...]] = {}
    messages: list[tuple[Any, ...]] = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if d["kind"] == "chat":
            ctx, cust = d["context"], d["context"].get("customer") or {}
            chats[d["chatId"]] = (
                d["chatId"], d["businessId"], d.get("orderId"), d["type"], d["status"],
                d["createdAt"], d["updatedAt"], ctx["type"], cust.get("name"),
                cust.get("publicId"), ctx.get("campaignId"), ctx.get("orderId"),
                ctx.get("returnId"),
            )  # fmt: skip
        elif d["kind"] == "message":
            payload = d.get("payload")
            messages.append(
                (
                    d["chatId"], d["messageId"], d["businessId"], d["createdAt"], d["sender"],
                    d.get("message"), json.dumps(payload, separators=(",", ":"))
                    if payload else None,
                )
            )  # fmt: skip
    ids = [(m[0], m[1]) for m in messages]
    assert len(ids) == len(set(ids)), "a message line was written twice"
    return set(chats.values()), set(messages)


def history_requests(fake: FakeServer) -> dict[int, list[Any]]:
    """Chat id -> bodies of the history requests the fake served (200 only)."""
    out: dict[int, list[Any]] = {}
    for e in fake.journal.entries("get_chat_history", status=200):
        out.setdefault(int(e.query["chatId"]), []).append(e.body)
    return out


class FailingSink:
    """Wraps a sink and raises after `pages` pages were saved (a crash mid-run)."""

    def __init__(self, inner: Sink, pages: int) -> None:
        self.inner, self.left = inner, pages

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        return await self.inner.load_state(business_id)

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        await self.inner.save_chats(business_id, chats)

    async def save_page(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage], state: ChatState
    ) -> None:
        if self.left == 0:
            raise RuntimeError("crash")
        self.left -= 1
        await self.inner.save_page(business_id, chat_id, messages, state)


def total_messages(fake: FakeServer) -> int:
    return sum(c.message_count for b in BUSINESSES for c in fake.market.chats(b))


async def test_sqlite_sync_equals_the_fake(client: ChatsClient, fake: FakeServer, tmp_path: Path):
    async with SQLiteSink(tmp_path / "c.db") as sink:
        report = await sync(client, BUSINESSES, sink)
    assert db_rows(tmp_path / "c.db") == expected(fake)
    assert (report.businesses, report.chats_total, report.chats_fetched) == (2, 10, 10)
    assert report.messages == total_messages(fake) == 2 * 5 * 230
    assert report.pages == 10 * 3 and report.requests == 2 + 30


async def test_jsonl_sync_equals_the_fake(client: ChatsClient, fake: FakeServer, tmp_path: Path):
    async with JsonlSink(tmp_path / "c.jsonl") as sink:
        await sync(client, BUSINESSES, sink)
    assert jsonl_rows(tmp_path / "c.jsonl") == expected(fake)


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
async def test_second_run_fetches_only_new_messages(
    client: ChatsClient, fake: FakeServer, tmp_path: Path, kind: str
) -> None:
    def open_sink() -> SQLiteSink | JsonlSink:
        return SQLiteSink(tmp_path / "c.db") if kind == "sqlite" else JsonlSink(tmp_path / "c.l")

    def rows() -> Rows:
        return db_rows(tmp_path / "c.db") if kind == "sqlite" else jsonl_rows(tmp_path / "c.l")

    async with open_sink() as sink:
        await sync(client, BUSINESSES, sink)
    a = fake.market.chats(BUSINESS)[1]
    b = fake.market.chats(2002)[3]
    last = {c.chat_id: c.first_message_id + c.seeded - 1 for c in (a, b)}
    fake.market.add_message(BUSINESS, a.chat_id, "new 1")
    fake.market.add_message(BUSINESS, a.chat_id, None, payload=[("x.pdf", b"%PDF")])
    fake.market.add_message(2002, b.chat_id, "new 2", sender="PARTNER")
    fake.journal.clear()

    async with open_sink() as sink:  # a new process would reopen the sink
        report = await sync(client, BUSINESSES, sink)
    fetched = history_requests(fake)
    assert fetched == {cid: [{"messageIdFrom": last_id + 1}] for cid, last_id in last.items()}
    assert (report.messages, report.chats_fetched, report.chats_skipped) == (3, 2, 8)
    assert rows() == expected(fake)

    # Just-changed chats are walked again (their updatedAt is too recent to
    # trust), every other chat is skipped; nothing new is written.
    fake.journal.clear()
    async with open_sink() as sink:
        report = await sync(client, BUSINESSES, sink)
    assert set(history_requests(fake)) == set(last)
    assert (report.messages, report.chats_skipped) == (0, 8)

    # skip_unchanged=False walks every chat, each from its checkpoint.
    fake.journal.clear()
    async with open_sink() as sink:
        report = await sync(client, BUSINESSES, sink, skip_unchanged=False)
    bodies = history_requests(fake)
    assert len(bodies) == 10 and all(len(v) == 1 and v[0]["messageIdFrom"] for v in bodies.values())
    assert report.messages == 0
    assert rows() == expected(fake)


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
async def test_crash_mid_run_then_resume_loses_and_duplicates_nothing(
    client: ChatsClient, fake: FakeServer, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / ("c.db" if kind == "sqlite" else "c.jsonl")

    def open_sink() -> SQLiteSink | JsonlSink:
        return SQLiteSink(path) if kind == "sqlite" else JsonlSink(path)

    seen: list[SyncReport] = []
    async with open_sink() as inner:
        with pytest.raises(RuntimeError, match="crash"):
            await sync(client, BUSINESSES, FailingSink(inner, pages=7), progress=seen.append)
    first = seen[-1].messages
    assert 0 < first < total_messages(fake)
    saved = db_rows(path)[1] if kind == "sqlite" else jsonl_rows(path)[1]
    assert len(saved) == first  # pages in flight when the crash came were finished and counted
    if kind == "jsonl":
        with path.open("ab") as f:  # the crash also tore a line in half
            f.write(b'{"kind":"message","businessId":1001,"chatId":1')
    fake.journal.clear()
    async with open_sink() as sink:
        second = await sync(client, BUSINESSES, sink)
    assert first + second.messages == total_messages(fake)  # no page fetched twice
    resumed = [b for bodies in history_requests(fake).values() for b in bodies[:1]]
    assert any(b.get("messageIdFrom") for b in resumed)
    got = db_rows(path) if kind == "sqlite" else jsonl_rows(path)
    assert got == expected(fake)


async def test_cancelled_mid_run_then_resumed(
    client: ChatsClient, fake: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.db"
    seen: list[SyncReport] = []
    async with SQLiteSink(path) as sink:

        def progress(report: SyncReport) -> None:
            seen.append(dataclasses.replace(report))
            if report.pages == 5:
                job.cancel()

        job = asyncio.ensure_future(sync(client, BUSINESSES, sink, progress=progress))
        with pytest.raises(asyncio.CancelledError):
            await job
    saved = db_rows(path)[1]
    assert 5 * 100 <= len(saved) < total_messages(fake)
    async with SQLiteSink(path) as sink:
        report = await sync(client, BUSINESSES, sink)
    assert len(saved) + report.messages == total_messages(fake)
    assert db_rows(path) == expected(fake)


async def test_server_error_mid_run_then_resumed(
    make_client: Callable[..., ChatsClient], fake: FakeServer, tmp_path: Path
) -> None:
    client = make_client(max_retries=0)
    path = tmp_path / "c.db"

    def progress(report: SyncReport) -> None:
        if report.pages == 6 and not len(fake.faults):
            fake.faults.add("status_500", times=1, operations={"get_chat_history"})

    async with SQLiteSink(path) as sink:
        with pytest.raises(ServerError):
            await sync(client, BUSINESSES, sink, progress=progress)
    assert 6 * 100 <= len(db_rows(path)[1]) < total_messages(fake)
    async with SQLiteSink(path) as sink:
        await sync(client, BUSINESSES, sink)
    assert db_rows(path) == expected(fake)


async def test_filters_select_chats(client: ChatsClient, fake: FakeServer, tmp_path: Path):
    async with SQLiteSink(tmp_path / "c.db") as sink:
        report = await sync(client, [BUSINESS], sink, statuses=["NEW", "FINISHED"])
    wanted = [c for c in fake.market.chats(BUSINESS) if c.status in ("NEW", "FINISHED")]
    chats, messages = db_rows(tmp_path / "c.db")
    assert {c[0] for c in chats} == {c.chat_id for c in wanted}
    assert len(messages) == report.messages == sum(c.message_count for c in wanted)


async def test_bad_concurrency_is_refused(client: ChatsClient, tmp_path: Path) -> None:
    async with SQLiteSink(tmp_path / "c.db") as sink:
        with pytest.raises(ValueError, match="concurrency"):
            await sync(client, [BUSINESS], sink, concurrency=0)


async def test_jsonl_write_failing_halfway_leaves_no_torn_line(
    client: ChatsClient, fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.jsonl"
    real_write = os.write
    calls = 0

    def disk_fills_up(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 5:  # half of this page reaches the disk, then it is full
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_fills_up)
    async with JsonlSink(path) as sink:
        with pytest.raises(OSError, match="No space left"):
            await sync(client, BUSINESSES, sink)
    assert path.read_bytes().endswith(b"\n")  # the half page was cut off
    monkeypatch.setattr(os, "write", real_write)
    async with JsonlSink(path) as sink:
        await sync(client, BUSINESSES, sink)
    assert jsonl_rows(path) == expected(fake)
