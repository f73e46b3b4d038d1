"""Sync throughput into each sink, fake in its own process, limits off.

    python -m benchmarks.ingest_throughput [--chats 20] [--messages 2000] [--rounds 3]

Each round syncs every chat into a fresh SQLite file and a fresh JSONL file
and prints messages/s; the median over rounds is the figure to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from yamarket_chats import ChatsClient, JsonlSink, SQLiteSink
from yamarket_chats.ingest import sync
from yamarket_chats.limits import METHODS

from ._fake import Fake, fake_server

SINKS: dict[str, Callable[[Path], SQLiteSink | JsonlSink]] = {
    "sqlite": lambda folder: SQLiteSink(folder / "chats.sqlite3"),
    "jsonl": lambda folder: JsonlSink(folder / "chats.jsonl"),
}


async def one_sync(fake: Fake, name: str, expect: int) -> float:
    limits = dict.fromkeys(METHODS)
    with tempfile.TemporaryDirectory() as folder:
        async with (
            ChatsClient(api_key=fake.api_key, base_url=fake.url, limits=limits) as client,
            SINKS[name](Path(folder)) as sink,
        ):
            report = await sync(client, [fake.business_id], sink)
    assert report.messages == expect, report
    return report.messages_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    expect = args.chats * args.messages
    rates: dict[str, list[float]] = {name: [] for name in SINKS}
    with fake_server(args.chats, args.messages) as fake:
        for round_ in range(args.rounds):
            for name in SINKS:
                rate = asyncio.run(one_sync(fake, name, expect))
                rates[name].append(rate)
                print(f"round {round_ + 1}: {name:6} {rate:,.0f} messages/s", flush=True)
    for name, values in rates.items():
        print(
            f"{name}: median {statistics.median(values):,.0f} messages/s "
            f"[{min(values):,.0f}-{max(values):,.0f}] over {len(values)} rounds of {expect:,}"
        )


if __name__ == "__main__":
    main()
