"""``load_state`` for many businesses: the time a resume waits before its first save.

    python -m benchmarks.sink_load_state [--businesses 3000] [--chats 100] [--rounds 3]

Builds, once, a SQLite database and a JSON Lines file as `sync` leaves them
for ``businesses x chats`` chats that each had a complete walk (a chat row or
line, one message, a checkpoint), then per round opens each sink and awaits
``load_state`` of every business at once, as `sync` does at its start. The
time includes opening the sink (for JSONL: the scan of the file). Target:
under 5 s for 3,000 x 100 (issue 12.3).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from yamarket_chats import Chat, ChatMessage, JsonlSink, SQLiteSink
from yamarket_chats.ingest import ChatState, Page
from yamarket_chats.models import ChatCustomer, ChatFullContext
from yamarket_chats.sinks.sqlite import (
    _UPSERT_CHAT,
    _UPSERT_MESSAGE,
    _UPSERT_STATE,
    _chat_row,
    _message_rows,
)

UTC3 = dt.timezone(dt.timedelta(hours=3))
WHEN = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC3)


def chat(chat_id: int) -> Chat:
    return Chat(
        chat_id=chat_id,
        order_id=chat_id * 10,
        type="CHAT",
        status="FINISHED",
        created_at=WHEN,
        updated_at=WHEN,
        context=ChatFullContext(
            type="ORDER", order_id=chat_id * 10, customer=ChatCustomer(name="Buyer", public_id="p")
        ),
    )


def message(chat_id: int) -> ChatMessage:
    return ChatMessage(message_id=chat_id * 7, created_at=WHEN, sender="CUSTOMER", message="hi")


def fill_sqlite(path: Path, businesses: int, chats: int) -> None:
    """What a complete sync of every chat leaves in the database, in one transaction."""
    asyncio.run(SQLiteSink(path).close())  # the sink's schema
    synced_at = time.time()
    db = sqlite3.connect(path)
    with db:
        for business in range(1, businesses + 1):
            ids = range(business * chats, business * chats + chats)
            db.executemany(_UPSERT_CHAT, [_chat_row(business, chat(c)) for c in ids])
            for c in ids:
                db.executemany(_UPSERT_MESSAGE, _message_rows(business, c, [message(c)]))
            db.executemany(
                _UPSERT_STATE,
                [(c, business, c * 7, WHEN.isoformat(), synced_at) for c in ids],
            )
    db.close()


def fill_jsonl(path: Path, businesses: int, chats: int) -> None:
    """What a complete sync of every chat leaves in the file (through the sink)."""
    sink = JsonlSink(path)
    synced_at = time.time()
    for business in range(1, businesses + 1):
        ids = range(business * chats, business * chats + chats)
        sink._save_chats(business, [chat(c) for c in ids])  # on this thread: no hand-offs
        for c in ids:
            sink._save_page(Page(business, c, [message(c)], ChatState(c * 7, WHEN, synced_at)))
    asyncio.run(sink.close())


async def load_all(sink: SQLiteSink | JsonlSink, businesses: int, chats: int) -> None:
    states = await asyncio.gather(*(sink.load_state(b) for b in range(1, businesses + 1)))
    assert all(len(s) == chats for s in states), "a business lost chats"


async def measure(kind: str, path: Path, businesses: int, chats: int) -> float:
    started = time.perf_counter()
    sink = SQLiteSink(path) if kind == "sqlite" else JsonlSink(path)
    async with sink:
        await load_all(sink, businesses, chats)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the measurement; the median seconds by sink."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--businesses", type=int, default=3000)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"sqlite": [], "jsonl": []}
    with tempfile.TemporaryDirectory() as folder:
        paths = {"sqlite": Path(folder) / "c.sqlite3", "jsonl": Path(folder) / "c.jsonl"}
        for kind, path in paths.items():
            started = time.perf_counter()
            (fill_sqlite if kind == "sqlite" else fill_jsonl)(path, args.businesses, args.chats)
            size = path.stat().st_size / 2**20
            print(f"built {kind}: {time.perf_counter() - started:.1f} s, {size:.0f} MB", flush=True)
        for round_ in range(args.rounds):
            for kind, path in paths.items():
                elapsed = asyncio.run(measure(kind, path, args.businesses, args.chats))
                times[kind].append(elapsed)
                print(f"round {round_ + 1}: {kind:6} {elapsed:.2f} s", flush=True)
    total = args.businesses * args.chats
    for kind, values in times.items():
        print(
            f"{kind}: median {statistics.median(values):.2f} s [{min(values):.2f}-"
            f"{max(values):.2f}] for {args.businesses:,} businesses x {args.chats} chats"
            f" ({total:,} checkpoints)"
        )
    return {kind: statistics.median(values) for kind, values in times.items()}


if __name__ == "__main__":
    main()
