"""SQLiteSink against a hand-written ``executemany`` per page, in the same run.

    python -m benchmarks.sink_sqlite [--chats 20] [--messages 2000] [--rounds 5]

The fake Market runs in its own process (limits off). Two comparisons, each
round in an order rotated per round, every write into a fresh file:

* ``sink-only``: the pages of one full sync, recorded once in memory, are
  written (a) by a plain ``sqlite3`` loop: per page ``BEGIN``, ``executemany``
  of the message upsert, the checkpoint upsert, ``COMMIT`` (the baseline),
  and (b) by ``SQLiteSink.save_page`` called from 4 asyncio tasks, each
  walking its chats' pages in order as `sync` does.
* ``sync``: a full `sync` from the fake into (a) a hand-written sink doing
  the same ``executemany`` per page inline on the event loop, and (b)
  ``SQLiteSink``.

Both write the sink's schema with the same upserts and synchronous setting.
The figure is messages/s, median over rounds, and the sink's ratio to the
baseline (the issue's target: >= 0.95); also this process's context switches
(voluntary + involuntary) per 100k messages, the cost of thread hand-offs.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from yamarket_chats import ChatsClient, SQLiteSink
from yamarket_chats.ingest import ChatState, sync
from yamarket_chats.limits import METHODS
from yamarket_chats.models import Chat, ChatMessage
from yamarket_chats.sinks.sqlite import (
    _UPSERT_CHAT,
    _UPSERT_MESSAGE,
    _UPSERT_STATE,
    SCHEMA,
    _chat_row,
    _message_rows,
)

from ._fake import Fake, fake_server

Page = tuple[int, int, Sequence[ChatMessage], ChatState]
CONCURRENCY = 4


class Baseline:
    """The hand-written sink: one transaction per page, run inline."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def write_page(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage], state: ChatState
    ) -> None:
        # The sink's own rows and SQL: what differs is only the path around them.
        rows = _message_rows(business_id, chat_id, messages)
        updated = state.updated_at.isoformat() if state.updated_at else None
        self.db.execute("BEGIN")
        self.db.executemany(_UPSERT_MESSAGE, rows)
        self.db.execute(
            _UPSERT_STATE, (chat_id, business_id, state.last_message_id, updated, state.synced_at)
        )
        self.db.execute("COMMIT")

    # The Sink protocol, for the `sync` comparison.
    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        return {}

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(_UPSERT_CHAT, [_chat_row(business_id, c) for c in chats])
        self.db.execute("COMMIT")

    async def save_page(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage], state: ChatState
    ) -> None:
        self.write_page(business_id, chat_id, messages, state)


class Recorder:
    """A sink that keeps every page in memory (to replay the same pages)."""

    def __init__(self) -> None:
        self.pages: list[Page] = []

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        return {}

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        pass

    async def save_page(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage], state: ChatState
    ) -> None:
        self.pages.append((business_id, chat_id, messages, state))


def _client(fake: Fake) -> ChatsClient:
    return ChatsClient(api_key=fake.api_key, base_url=fake.url, limits=dict.fromkeys(METHODS))


async def record(fake: Fake) -> list[Page]:
    recorder = Recorder()
    async with _client(fake) as client:
        await sync(client, [fake.business_id], recorder)
    return recorder.pages


def by_chat(pages: list[Page]) -> list[list[Page]]:
    chats: dict[int, list[Page]] = {}
    for page in pages:
        chats.setdefault(page[1], []).append(page)
    return list(chats.values())


def write_baseline(path: Path, pages: list[Page]) -> float:
    sink = Baseline(path)
    started = time.perf_counter()
    try:
        for page in pages:
            sink.write_page(*page)
    finally:
        sink.close()  # timed for both: closing checkpoints what the WAL still holds
    return time.perf_counter() - started


async def write_sink(path: Path, pages: list[Page]) -> float:
    chats = iter(by_chat(pages))
    async with SQLiteSink(path) as sink:

        async def task() -> None:
            for chat in chats:
                for page in chat:
                    await sink.save_page(*page)

        started = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(CONCURRENCY)))
        await sink.close()  # every write finished
        return time.perf_counter() - started


async def sync_into(fake: Fake, path: Path, kind: str, expect: int) -> float:
    async with _client(fake) as client:
        if kind == "baseline":
            sink = Baseline(path)
            try:
                report = await sync(client, [fake.business_id], sink)
            finally:
                sink.close()
        else:
            async with SQLiteSink(path) as sqlite_sink:
                report = await sync(client, [fake.business_id], sqlite_sink)
    assert report.messages == expect, report
    return report.messages_per_second


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the comparison; the sink's ratio to the baseline by mode."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["sink-only", "sync"], action="append")
    args = parser.parse_args(argv)
    expect = args.chats * args.messages
    modes = args.only or ["sink-only", "sync"]
    rates: dict[tuple[str, str], list[float]] = {}
    ctx: dict[tuple[str, str], list[float]] = {}  # this process's, per 100k messages
    with fake_server(args.chats, args.messages) as fake:
        pages = asyncio.run(record(fake))
        assert sum(len(p[2]) for p in pages) == expect
        runs: dict[tuple[str, str], Callable[[Path], float]] = {
            ("sink-only", "baseline"): lambda p: expect / write_baseline(p, pages),
            ("sink-only", "SQLiteSink"): lambda p: expect / asyncio.run(write_sink(p, pages)),
            ("sync", "baseline"): lambda p: asyncio.run(sync_into(fake, p, "baseline", expect)),
            ("sync", "SQLiteSink"): lambda p: asyncio.run(sync_into(fake, p, "sink", expect)),
        }
        order = [key for key in runs if key[0] in modes]
        for round_ in range(args.rounds):
            shift = round_ % len(order)
            for key in order[shift:] + order[:shift]:
                before = resource.getrusage(resource.RUSAGE_SELF)
                with tempfile.TemporaryDirectory() as folder:
                    rate = runs[key](Path(folder) / "chats.sqlite3")
                after = resource.getrusage(resource.RUSAGE_SELF)
                switches = (after.ru_nvcsw + after.ru_nivcsw) - (before.ru_nvcsw + before.ru_nivcsw)
                rates.setdefault(key, []).append(rate)
                ctx.setdefault(key, []).append(switches * 100_000 / expect)
                print(
                    f"round {round_ + 1}: {key[0]:9} {key[1]:10} {rate:9,.0f} msg/s"
                    f" {switches * 100_000 / expect:8,.0f} context switches/100k msgs",
                    flush=True,
                )
    ratios = {}
    for mode in modes:
        base = statistics.median(rates[(mode, "baseline")])
        sink = statistics.median(rates[(mode, "SQLiteSink")])
        for name in ("baseline", "SQLiteSink"):
            values = rates[(mode, name)]
            print(
                f"{mode:9} {name:10} median {statistics.median(values):9,.0f} msg/s "
                f"[{min(values):,.0f}-{max(values):,.0f}] over {len(values)} rounds of {expect:,},"
                f" {statistics.median(ctx[(mode, name)]):,.0f} context switches/100k msgs"
            )
        print(f"{mode:9} SQLiteSink / baseline = {sink / base:.2f}x")
        ratios[mode] = sink / base
    return ratios


if __name__ == "__main__":
    main()
