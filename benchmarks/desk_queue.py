"""The reply-due queue: what ``waiting_chats`` costs over a plain read of the same chats.

    python -m benchmarks.desk_queue [--chats 100000] [--messages 20] [--rounds 5] [--postgres]

Builds, once, what a sync leaves for ``chats`` chats of 100 businesses with
``messages`` messages each (statuses cycle through the six, so a third of the
chats wait; senders cycle so that most waiting chats were answered before),
in SQLite and, with ``--postgres``, in a PostgreSQL that tests/pg_server.py
starts. Per round it times, in one process on one database:

- the baseline: the waiting chats' rows read plainly (``SELECT ... FROM chats
  WHERE status IN (...)``), the floor of any queue;
- ``waiting_chats``: the same chats with the waiting rule (three probes of
  the messages' primary key per chat) and the customer's last message, sorted.

Reports the medians, their ratio and the cost per waiting chat. And what the
desk costs a sync that never uses it: the one change on the sync's path is
the chat upsert's guard against an older listing (``WHERE julianday(new) >=
julianday(old)`` in SQLite), timed re-listing every chat with and without it.
Written to benchmarks/results/desk_queue.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from yamarket_chats import Chat, ChatMessage, SQLiteSink
from yamarket_chats.desk import waiting_chats
from yamarket_chats.models import ChatCustomer, ChatFullContext
from yamarket_chats.sinks.sqlite import _UPSERT_CHAT, _UPSERT_MESSAGE, _chat_row, _message_rows

UTC3 = dt.timezone(dt.timedelta(hours=3))
EPOCH = dt.datetime(2026, 1, 1, tzinfo=UTC3)
STATUSES = ("NEW", "WAITING_FOR_CUSTOMER", "WAITING_FOR_PARTNER", "WAITING_FOR_ARBITER",
            "WAITING_FOR_MARKET", "FINISHED")  # fmt: skip
SENDERS = ("CUSTOMER", "PARTNER", "CUSTOMER", "CUSTOMER", "MARKET")
BUSINESSES = 100
RESULTS = Path(__file__).parent / "results" / "desk_queue.md"
_PLAIN = (
    "SELECT business_id, chat_id, status, created_at, customer_name FROM {s}chats"
    " WHERE status IN ('NEW', 'WAITING_FOR_PARTNER')"
)


def chat(chat_id: int) -> Chat:
    when = EPOCH + dt.timedelta(minutes=chat_id % 100_000)
    return Chat(
        chat_id=chat_id,
        order_id=chat_id * 10,
        type="CHAT",
        status=STATUSES[chat_id % len(STATUSES)],
        created_at=when,
        updated_at=when,
        context=ChatFullContext(
            type="ORDER", order_id=chat_id * 10, customer=ChatCustomer(name="Buyer", public_id="p")
        ),
    )


def messages(chat_id: int, count: int) -> list[ChatMessage]:
    base = chat(chat_id).created_at
    return [
        ChatMessage(
            message_id=chat_id * 1000 + i,
            created_at=base + dt.timedelta(seconds=10 * i),
            sender=SENDERS[(chat_id + i) % len(SENDERS)],
            message=f"message {i} of chat {chat_id}",
        )
        for i in range(count)
    ]


def layout(chats: int) -> Iterator[tuple[int, range]]:
    per = chats // BUSINESSES
    for business in range(1, BUSINESSES + 1):
        yield business, range(business * 1_000_000, business * 1_000_000 + per)


def fill_sqlite(path: Path, chats: int, count: int) -> None:
    asyncio.run(SQLiteSink(path).close())  # the sink's schema
    db = sqlite3.connect(path)
    with db:
        for business, ids in layout(chats):
            db.executemany(_UPSERT_CHAT, [_chat_row(business, chat(c)) for c in ids])
            for c in ids:
                db.executemany(_UPSERT_MESSAGE, _message_rows(business, c, messages(c, count)))
    db.close()


async def fill_postgres(sink: Any, chats: int, count: int) -> None:
    for business, ids in layout(chats):
        await sink.save_chats(business, [chat(c) for c in ids])
        await asyncio.gather(*(sink.save_messages(business, c, messages(c, count)) for c in ids))


def upsert_cost(path: Path, chats: int, rounds: int) -> dict[str, float]:
    """Seconds to re-list every chat (all conflicts), the guard on and off; medians."""
    unguarded = _UPSERT_CHAT.split("WHERE julianday")[0]
    assert unguarded != _UPSERT_CHAT, "the guard is gone: update this benchmark"
    rows = [_chat_row(business, chat(c)) for business, ids in layout(chats) for c in ids]
    times: dict[str, list[float]] = {"guarded": [], "unguarded": []}
    db = sqlite3.connect(path)
    for _ in range(rounds):
        for name, sql in (("guarded", _UPSERT_CHAT), ("unguarded", unguarded)):
            started = time.perf_counter()
            with db:
                db.executemany(sql, rows)
            times[name].append(time.perf_counter() - started)
    db.close()
    guarded, plain = (statistics.median(times[k]) for k in ("guarded", "unguarded"))
    return {"guarded_s": guarded, "unguarded_s": plain, "ratio": guarded / plain}


def _sqlite_plain(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return len(db.execute(_PLAIN.format(s="")).fetchall())


async def _median(rounds: int, run: Callable[[], Any]) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        size = await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), size


async def measure(source: Any, plain: Callable[[], Any], rounds: int) -> dict[str, float]:
    async def queue() -> int:
        return len(await waiting_chats(source))

    base, rows = await _median(rounds, plain)
    desk, listed = await _median(rounds, queue)
    assert rows == listed, (rows, listed)
    return {"waiting": listed, "plain_s": base, "queue_s": desk, "ratio": desk / base,
            "us_per_chat": desk / listed * 1e6}  # fmt: skip


async def run_postgres(chats: int, count: int, rounds: int) -> dict[str, float]:
    from tests.pg_server import postgres_server
    from yamarket_chats.sinks.postgres import PostgresSink

    with postgres_server() as server:
        async with PostgresSink(server.create_database()) as sink:
            await fill_postgres(sink, chats, count)
            await sink.query("ANALYZE")

            async def plain() -> int:
                return len(await sink.query(_PLAIN.format(s="yamarket_chats."), fetch="all"))

            return await measure(sink, plain, rounds)


def report(
    chats: int, count: int, results: dict[str, dict[str, float]], upsert: dict[str, float]
) -> str:
    lines = [
        f"# The reply-due queue: {chats:,} chats x {count} messages, 100 businesses",
        "",
        "`python -m benchmarks.desk_queue` (medians; the baseline reads the same waiting",
        "chats' rows plainly, in the same run and database).",
        "",
        "| database | waiting chats | plain read | `waiting_chats` | ratio | per waiting chat |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {int(r['waiting']):,} | {r['plain_s'] * 1000:.1f} ms"
            f" | {r['queue_s'] * 1000:.1f} ms | {r['ratio']:.1f}x | {r['us_per_chat']:.1f} µs |"
        )
    lines += [
        "",
        f"Unused, the desk costs a sync the chat upsert's guard: re-listing {chats:,} chats"
        f" (every row a conflict) took {upsert['guarded_s'] * 1000:.0f} ms with it and"
        f" {upsert['unguarded_s'] * 1000:.0f} ms without, {upsert['ratio']:.2f}x (SQLite; the"
        " sync's own listing is one such upsert per page of 100 chats).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "desk.sqlite3"
        fill_sqlite(path, args.chats, args.messages)

        async def plain() -> int:
            return await asyncio.to_thread(_sqlite_plain, path)

        results["SQLite (a path, read-only)"] = asyncio.run(measure(path, plain, args.rounds))
        upsert = upsert_cost(path, args.chats, args.rounds)
    if args.postgres:
        results["PostgreSQL 15"] = asyncio.run(run_postgres(args.chats, args.messages, args.rounds))
    text = report(args.chats, args.messages, results, upsert)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return results


if __name__ == "__main__":
    main()
