"""Sinks on their own: damaged JSONL files (issue 14.4), load_state at scale (12.3)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.test_ingest import BUSINESSES, expected, history_requests, jsonl_rows
from yamarket_chats import ApiError, ChatMessage, ChatsClient, InvalidRequestError
from yamarket_chats.ingest import ChatState, sync
from yamarket_chats.sinks import JsonlSink, SQLiteSink
from yamarket_chats.sinks import sqlite as sqlite_sink
from yamarket_chats.sinks.sqlite import SCHEMA
from yamarket_chats.testing import FakeServer

# -- JSONL: a line that is not valid ------------------------------------------


def valid_rows(path: Path, tmp_path: Path) -> object:
    """`jsonl_rows` of the file's lines that parse (blank lines are left out)."""
    kept = tmp_path / "valid.jsonl"
    kept.write_bytes(b"".join(raw for raw in path.read_bytes().splitlines(True) if raw.strip()))
    return jsonl_rows(kept)


def lines_of(path: Path) -> list[dict[str, Any]]:
    """The file's non-blank lines, parsed."""
    return [json.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]


async def test_damaged_lines_are_repaired_and_resume_is_exactly_once(
    client: ChatsClient, fake: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.jsonl"
    async with JsonlSink(path) as sink:
        await sync(client, BUSINESSES, sink)
    lines = path.read_bytes().splitlines(keepends=True)
    messages = [(i, json.loads(raw)) for i, raw in enumerate(lines) if b'"message"' in raw]
    by_chat: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for i, m in messages:
        by_chat.setdefault(m["chatId"], []).append((i, m))
    first, second = list(by_chat.values())[:2]
    # 1. A torn write glued to the next line (the last message of its chat).
    glued_at = first[-1][0]
    lines[glued_at] = b'{"kind":"message","businessId":1001,"chatId":1' + lines[glued_at]
    # 2. A message line that is JSON but not a valid line: its chat is fetched
    #    again from the message before it; the messages after it are in the file.
    wrong_at, wrong = second[100]
    lines[wrong_at] = lines[wrong_at].replace(
        b'"messageId":%d' % wrong["messageId"], b'"messageId":"%d"' % wrong["messageId"]
    )
    # 3. Garbage between two lines, and a blank line (which is no damage).
    lines.insert(5, b"\x00\x00 not json at all \xff\n")
    lines.insert(3, b"\n")
    path.write_bytes(b"".join(lines))
    bad = {glued_at + 3, wrong_at + 3, 5 + 2}  # 1-based line numbers after the inserts

    fake.journal.clear()
    with caplog.at_level(logging.WARNING, logger="yamarket_chats.sinks"):
        async with JsonlSink(path) as sink:
            await sync(client, BUSINESSES, sink)
            assert sorted(sink.rejected) == sorted(bad)
    said = [r.getMessage() for r in caplog.records]
    for number in bad:  # each one said where it went
        assert any(f"line {number} " in m and "c.jsonl.rejected" in m for m in said), said
    assert any(f"chat {wrong['chatId']} is fetched again" in m for m in said)
    rejected = (tmp_path / "c.jsonl.rejected").read_bytes().splitlines()
    assert len(rejected) == 3 and b"\x00\x00 not json at all \xff" in rejected

    # Only the damaged chat is walked again, from the message before the damage.
    walked = history_requests(fake)
    assert list(walked) == [wrong["chatId"]]
    assert walked[wrong["chatId"]][0] == {"messageIdFrom": second[99][1]["messageId"] + 1}
    assert valid_rows(path, tmp_path) == expected(fake)  # every message once, none lost

    # The file is valid JSON Lines again, and is repaired once, not at every open.
    assert all(json.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip())
    caplog.clear()
    async with JsonlSink(path) as sink:
        await sink.load_state(BUSINESSES[0])
        assert sink.rejected == []
    assert not caplog.records


async def test_short_invalid_line_becomes_blank(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.jsonl"
    valid = b'{"kind":"message","businessId":1,"chatId":2,"messageId":7}\n'
    path.write_bytes(valid + b"oops\n" + valid.replace(b"7}", b"9}"))
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(9, None, None)}
        assert sink.rejected == [2]
    assert path.read_bytes().splitlines()[1] == b"    "
    assert (tmp_path / "c.jsonl.rejected").read_bytes() == b"oops\n"
    assert "if it held a message, that message is only there now" in caplog.text


async def test_whole_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    line = b'{"kind":"message","businessId":1,"chatId":2,"messageId":7}'
    path.write_bytes(line + b"\n" + line.replace(b"7}", b"8}"))  # a write cut before "\n"
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(8, None, None)}
        assert sink.rejected == []
    assert path.read_bytes().endswith(b'"messageId":8}\n')


# -- load_state at scale ------------------------------------------------------

# Enough that a scan of every chat per business (the old JSONL sink, SQLite
# without its index) takes seconds: 2,000 x 40,000 rows.
N_BUSINESSES, N_CHATS = 2000, 20


def synced_line(business_id: int, chat_id: int) -> bytes:
    return (
        b'{"kind":"synced","businessId":%d,"chatId":%d,'
        b'"updatedAt":"2024-01-01T00:00:00+03:00","syncedAt":1.5}\n' % (business_id, chat_id)
    )


async def load_all(sink: SQLiteSink | JsonlSink, businesses: range) -> float:
    started = time.perf_counter()
    states = await asyncio.gather(*(sink.load_state(b) for b in businesses))
    elapsed = time.perf_counter() - started
    assert all(len(s) == N_CHATS for s in states)
    if businesses[0] == 1:
        assert states[0][1] == ChatState(7, states[0][1].updated_at, 1.5)
    return elapsed


async def test_jsonl_load_state_is_linear(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with path.open("wb") as f:
        for chat in range(N_BUSINESSES * N_CHATS):
            business, chat_id = chat % N_BUSINESSES + 1, chat + 1
            f.write(synced_line(business, chat_id))
            if chat_id == 1:
                f.write(b'{"kind":"message","businessId":1,"chatId":1,"messageId":7}\n')
    async with JsonlSink(path) as sink:
        first = await load_all(sink, range(1, 2))  # the scan of the file: linear
        rest = await load_all(sink, range(2, N_BUSINESSES + 1))
    # Every other business costs its own chats only: all of them together cost
    # about as much as the one scan (1-2x here), where a walk over every chat
    # for each business cost 60x.
    assert rest < 8 * first, (first, rest)


async def test_sqlite_load_state_uses_an_index_also_in_old_databases(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)  # a database of the version without the index
    db.executescript(SCHEMA.replace("CREATE INDEX IF NOT EXISTS sync_state_business", "--"))
    db.executemany(
        "INSERT INTO sync_state VALUES (?, ?, ?, ?, ?)",
        (
            (chat + 1, chat % N_BUSINESSES + 1, 7, "2024-01-01T00:00:00+03:00", 1.5)
            for chat in range(N_BUSINESSES * N_CHATS)
        ),
    )
    db.commit()
    db.close()
    async with SQLiteSink(path) as sink:
        assert await load_all(sink, range(1, N_BUSINESSES + 1)) < 10  # a table scan each: 5 s+
    db = sqlite3.connect(path)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM sync_state WHERE business_id = 1"
    ).fetchall()
    db.close()
    assert "sync_state_business" in str(plan)


async def test_jsonl_chat_moved_to_another_business(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(synced_line(1, 5) + synced_line(2, 5) + synced_line(1, 6))
    async with JsonlSink(path) as sink:
        assert set(await sink.load_state(1)) == {6}
        assert set(await sink.load_state(2)) == {5}
        await sink.save_page(1, 5, [], ChatState(None, None, None))
        assert set(await sink.load_state(1)) == {5, 6}
        assert set(await sink.load_state(2)) == set()


# -- SQLite: pages written inline, never blocking the loop on another writer ---


async def test_sqlite_waits_for_another_writer_off_the_loop(
    client: ChatsClient, fake: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.db"
    async with SQLiteSink(path) as sink:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        job = asyncio.ensure_future(sync(client, BUSINESSES, sink))
        # The sync has chats to save (the fake answered) and the loop ticks on.
        deadline = time.monotonic() + 10
        while not fake.journal.entries("get_chats", status=200) or ticks <= 10:
            assert time.monotonic() < deadline and not job.done()
            await asyncio.sleep(0.01)
        assert not job.done()  # the sync waits, the loop does not
        other.execute("COMMIT")
        other.close()
        report = await asyncio.wait_for(job, 30)
        ticking.cancel()
    assert report.messages == 2 * 5 * 230
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM messages").fetchone() == (2 * 5 * 230,)
    db.close()


async def test_jsonl_appends_a_chat_line_only_when_the_chat_changed(
    client: ChatsClient, fake: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.jsonl"

    def chat_lines() -> int:
        return path.read_bytes().count(b'{"kind":"chat"')

    for _ in range(2):  # the second run (a new process, say) finds nothing changed
        async with JsonlSink(path) as sink:
            await sync(client, BUSINESSES, sink)
        assert chat_lines() == 10
    chat = fake.market.chats(BUSINESSES[0])[0]
    fake.market.add_message(BUSINESSES[0], chat.chat_id, "new")  # its updatedAt moves
    async with JsonlSink(path) as sink:
        await sync(client, BUSINESSES, sink)
    assert chat_lines() == 11


async def test_sqlite_wal_stays_bounded_under_a_steady_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_sink, "CHECKPOINT_EVERY", 20)
    path = tmp_path / "c.db"
    when = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    async with SQLiteSink(path) as sink:
        for page in range(2000):  # back to back: no pause for a checkpoint to catch up
            ids = range(page * 20, page * 20 + 20)
            messages = [
                ChatMessage(message_id=i, created_at=when, sender="X", message="x" * 200)
                for i in ids
            ]
            await sink.save_page(1, page % 10, messages, ChatState(ids[-1]))
        wal, db = (tmp_path / "c.db-wal").stat().st_size, path.stat().st_size
    # Checkpoints every 20 commits and the WAL starts over after each (a
    # passive checkpoint behind a steady writer let it grow past the database).
    assert wal < db / 2, (wal, db)


async def test_whole_line_glued_to_the_next_is_fetched_again(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"

    def line(message_id: int) -> bytes:
        return (
            b'{"kind":"message","businessId":1,"chatId":2,"messageId":%d,'
            b'"createdAt":"2024-05-01T12:00:00+03:00","sender":"CUSTOMER"}' % message_id
        )

    path.write_bytes(line(7) + b"\n" + line(8) + line(9) + b"\n")  # 8 lost its newline
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(7, None, None)}  # from before 8
        again = [msgspec.json.decode(line(i), type=ChatMessage) for i in (8, 9)]
        await sink.save_page(1, 2, again, ChatState(9, None, None))
        assert await sink.load_state(1) == {2: ChatState(9, None, None)}
    ids = [d["messageId"] for d in lines_of(path) if d["kind"] == "message"]
    assert sorted(ids) == [7, 8, 9]  # 9 was in the file already: not written twice
    assert (tmp_path / "c.jsonl.rejected").read_bytes() == line(8) + b"\n"


# -- JSONL: damage that must survive runs, and files that are not a sink's ----


def message_line(message_id: int, text: bytes = b"hello") -> bytes:
    return (
        b'{"kind":"message","businessId":1,"chatId":2,"messageId":%d,'
        b'"createdAt":"2024-05-01T12:00:00+03:00","sender":"CUSTOMER","message":"%s"}'
        % (message_id, text)
    )


def messages(*ids: int) -> list[ChatMessage]:
    return [msgspec.json.decode(message_line(i), type=ChatMessage) for i in ids]


async def test_damaged_message_survives_a_run_that_ends_before_its_chat(
    make_client: Any, fake: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.jsonl"
    async with JsonlSink(path) as sink:
        await sync(make_client(), BUSINESSES, sink)
    lines = path.read_bytes().splitlines(keepends=True)
    at = [i for i, raw in enumerate(lines) if b'"kind":"message"' in raw][100]
    chat_id = json.loads(lines[at])["chatId"]
    lines[at] = lines[at].replace(b'"sender"', b'"sender\x00"')  # not JSON any more
    path.write_bytes(b"".join(lines))

    # A run that repairs the file, then ends before the chat is walked again.
    async with JsonlSink(path) as sink:
        with pytest.raises(ApiError, match="HTTP 40"):
            await sync(make_client(api_key="not-the-key"), BUSINESSES, sink)
        assert sink.rejected == [at + 1]
    # The next run still walks that chat again from before the damage.
    fake.journal.clear()
    async with JsonlSink(path) as sink:
        await sync(make_client(), BUSINESSES, sink)
        assert sink.rejected == []
    assert valid_rows(path, tmp_path) == expected(fake)  # the message once, none lost
    assert list(history_requests(fake)) == [chat_id]
    # Walked to its end: the marker is resolved, nothing is walked again.
    fake.journal.clear()
    async with JsonlSink(path) as sink:
        await sync(make_client(), BUSINESSES, sink)
    assert history_requests(fake) == {}


async def test_refetch_cut_short_never_writes_a_message_twice(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join(message_line(i) for i in (7, 8, 9)) + b"\n")
    with path.open("r+b") as f:  # damage 8 in place
        f.seek(len(message_line(7)) + 1 + 100)
        f.write(b"\xff")
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(7, None, None)}
        await sink.save_page(1, 2, messages(8), ChatState(8, None, None))  # then it ends
    async with JsonlSink(path) as sink:  # not walked to its end: from 7 again
        assert await sink.load_state(1) == {2: ChatState(7, None, None)}
        updated = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
        await sink.save_page(1, 2, messages(8, 9, 10), ChatState(10, updated, 1.5))
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(10, updated, 1.5)}
    ids = [d["messageId"] for d in lines_of(path) if d["kind"] == "message"]
    assert sorted(ids) == [7, 8, 9, 10]
    assert {"kind": "rejected", "businessId": 1, "chatId": 2, "refetchFrom": 7} in lines_of(path)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw.replace(b'"hello"', b'"hel"lo"'), id="flipped-quote"),
        pytest.param(lambda raw: raw.replace(b"hello", b"hel\xfflo"), id="invalid-utf8"),
        pytest.param(lambda raw: raw.replace(b"hello", b"hel\x00lo"), id="nul-byte"),
        pytest.param(lambda raw: raw[:-20], id="truncated-mid-line"),
        pytest.param(lambda raw: raw[:60] + message_line(9), id="torn-prefix-glued"),
    ],
)
async def test_chat_of_a_broken_message_line_is_fetched_again(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "c.jsonl"
    broken = damage(message_line(8))
    nine = b"" if broken.endswith(message_line(9)) else message_line(9) + b"\n"
    path.write_bytes(message_line(7) + b"\n" + broken + b"\n" + nine)
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(7, None, None)}  # from before 8
        assert sink.rejected == [2]
        await sink.save_page(1, 2, messages(8, 9), ChatState(9, None, None))
    ids = [d["messageId"] for d in lines_of(path) if d["kind"] == "message"]
    assert sorted(ids) == [7, 8, 9]
    assert all(raw.isascii() for raw in path.read_bytes().splitlines())


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"# My project\n\nSome text\n", id="readme"),
        pytest.param(b"\n\n# My project", id="readme-without-newline"),
        pytest.param(b"SQLite format 3\x00" + bytes(100), id="database"),
    ],
)
def test_a_file_that_is_not_a_sinks_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "README.md"
    path.write_bytes(content)
    with pytest.raises(InvalidRequestError, match=f"{path} is not a JSONL sink file"):
        JsonlSink(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


async def test_a_file_with_too_many_damaged_lines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    good = [message_line(i) + b"\n" for i in range(1, 301)]
    # 3 damaged lines (of 300) are repaired; 4 (1.3%) are refused, file untouched.
    path.write_bytes(b"".join(good[:100] + [b"junk\n"] * 3 + good[100:]))
    async with JsonlSink(path) as sink:
        await sink.load_state(1)
        assert sink.rejected == [101, 102, 103]
    content = b"".join(good[:100] + [b"junk\n"] * 4 + good[100:]) + b'{"kind":"mes'
    path.write_bytes(content)
    sink = JsonlSink(path)
    with pytest.raises(InvalidRequestError, match=f"{path} does not look like a JSONL sink"):
        await sink.load_state(1)
    await sink.close()
    assert path.read_bytes() == content


async def test_a_torn_last_line_is_copied_before_it_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(message_line(7) + b"\n" + message_line(8)[:50])
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(7, None, None)}
    assert path.read_bytes() == message_line(7) + b"\n"
    assert (tmp_path / "c.jsonl.rejected").read_bytes() == message_line(8)[:50] + b"\n"


async def test_damage_after_a_refetch_resumes_below_the_refetched_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.jsonl"
    updated = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    path.write_bytes(b"\n".join(message_line(i) for i in (7, 8, 9)) + b"\n")
    with path.open("r+b") as f:
        f.seek(len(message_line(7)) + 1 + 100)
        f.write(b"\xff")  # 8 is damaged ...
    async with JsonlSink(path) as sink:
        await sink.load_state(1)
        await sink.save_page(1, 2, messages(8, 9), ChatState(9, updated, 1.5))
    lines = path.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-2])["messageId"] == 8  # ... and written again after 9
    lines[-2] = lines[-2].replace(b"hello", b"hel\xfflo")  # then that line is damaged
    path.write_bytes(b"".join(lines))
    async with JsonlSink(path) as sink:
        assert await sink.load_state(1) == {2: ChatState(7, None, None)}  # not from 9
        await sink.save_page(1, 2, messages(8, 9), ChatState(9, updated, 1.5))
    ids = [d["messageId"] for d in lines_of(path) if d["kind"] == "message"]
    assert sorted(ids) == [7, 8, 9]
