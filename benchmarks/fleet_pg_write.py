"""How `PostgresSink` writes a page: four ways measured on one throwaway PostgreSQL.

    python -m benchmarks.fleet_pg_write [--pages 2000] [--size 100] [--tasks 4] [--rounds 3]

Each way stores ``--pages`` pages of ``--size`` new messages plus the page's
checkpoint atomically, ``--tasks`` pages at a time through one pool (as a
sync does):

- ``executemany``: BEGIN; ``executemany`` of the message upsert; the
  checkpoint upsert; COMMIT (asyncpg pipelines the executemany);
- ``copy``: BEGIN; ``COPY`` into a temporary table; ``INSERT ... SELECT ...
  ON CONFLICT`` from it; the checkpoint upsert; COMMIT;
- ``unnest``: one statement, the messages as arrays through ``unnest`` and
  the checkpoint in a CTE, no BEGIN/COMMIT;
- ``json`` (what the sink does, through `PostgresSink.save_page`): one
  statement, the page as one JSON parameter (msgspec) unpacked by
  ``json_to_recordset``, the checkpoint in a CTE.

Prints messages/s (wall) and this process's CPU per 100k messages: in a sync
the client's CPU is the scarce one.

Needs the PostgreSQL server binaries (tests/pg_server.py starts one).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.pg_server import postgres_server
from yamarket_chats.ingest import ChatState
from yamarket_chats.models import ChatMessage
from yamarket_chats.sinks.postgres import PostgresSink

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=3)))

_UPSERT = """
INSERT INTO yamarket_chats.messages VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (business_id, chat_id, message_id) DO UPDATE SET
    created_at = excluded.created_at, sender = excluded.sender,
    message = excluded.message, payload = excluded.payload
"""
_STATE = """
INSERT INTO yamarket_chats.sync_state VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (business_id, chat_id) DO UPDATE SET last_message_id = excluded.last_message_id,
    updated_at = excluded.updated_at, synced_at = excluded.synced_at
"""


def page(chat: int, n: int, size: int) -> list[ChatMessage]:
    first = n * size + 1
    return [
        ChatMessage(
            message_id=i,
            created_at=T0 + dt.timedelta(seconds=i),
            sender="USER",
            message=f"message {i} of chat {chat}: где мой заказ?",
        )
        for i in range(first, first + size)
    ]


#: Client CPU seconds per 100k messages, by way (this process: encoding, the driver).
CPU: dict[str, list[float]] = {}

Writer = Callable[[int, int, list[ChatMessage]], Awaitable[None]]


async def run(write: Writer, business: int, pages: int, size: int, tasks: int) -> float:
    work = iter(range(pages))

    async def worker(chat: int) -> None:
        for n, _ in enumerate(work):
            await write(business, chat, page(chat, n, size))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(chat) for chat in range(1, tasks + 1)))
    CPU.setdefault(write.__name__, []).append(
        (time.process_time() - cpu) / (pages * size) * 100_000
    )
    return pages * size / (time.perf_counter() - started)


async def measure(url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"executemany": [], "copy": [], "unnest": [], "json": []}
    async with PostgresSink(url, max_size=args.tasks) as sink:
        await sink.open()
        pool = sink.pool

        def rows(b: int, c: int, messages: list[ChatMessage]) -> list[tuple[Any, ...]]:
            return [(b, c, m.message_id, m.created_at, m.sender, m.message, None) for m in messages]

        async def executemany(b: int, c: int, messages: list[ChatMessage]) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(_UPSERT, rows(b, c, messages))
                await conn.execute(_STATE, b, c, messages[-1].message_id, None, None)

        async def copy(b: int, c: int, messages: list[ChatMessage]) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS page (LIKE yamarket_chats.messages)"
                    " ON COMMIT DELETE ROWS"
                )
                await conn.copy_records_to_table("page", records=rows(b, c, messages))
                await conn.execute(
                    "INSERT INTO yamarket_chats.messages SELECT * FROM page"
                    " ON CONFLICT (business_id, chat_id, message_id) DO UPDATE SET"
                    " created_at = excluded.created_at, sender = excluded.sender,"
                    " message = excluded.message, payload = excluded.payload"
                )
                await conn.execute(_STATE, b, c, messages[-1].message_id, None, None)

        async def unnest(b: int, c: int, messages: list[ChatMessage]) -> None:
            columns: list[list[Any]] = [[], [], [], []]
            for m in messages:
                for column, value in zip(
                    columns, (m.message_id, m.created_at, m.sender, m.message), strict=True
                ):
                    column.append(value)
            await pool.execute(
                """
                WITH page AS (
                    INSERT INTO yamarket_chats.messages
                    SELECT $1, $2, id, created, sender, message, NULL
                    FROM unnest($3::bigint[], $4::timestamptz[], $5::text[], $6::text[])
                        AS p(id, created, sender, message)
                    ON CONFLICT (business_id, chat_id, message_id) DO UPDATE SET
                        created_at = excluded.created_at, sender = excluded.sender,
                        message = excluded.message, payload = excluded.payload
                )
                INSERT INTO yamarket_chats.sync_state VALUES ($1, $2, $7, NULL, NULL)
                ON CONFLICT (business_id, chat_id) DO UPDATE SET
                    last_message_id = excluded.last_message_id
                """,
                b,
                c,
                *columns,
                messages[-1].message_id,
            )

        async def as_json(b: int, c: int, messages: list[ChatMessage]) -> None:
            await sink.save_page(b, c, messages, ChatState(messages[-1].message_id))

        ways: dict[str, Writer] = {
            "executemany": executemany,
            "copy": copy,
            "unnest": unnest,
            "json": as_json,
        }
        business = 0
        for round_ in range(args.rounds):
            for name, write in ways.items():
                business += 1
                rate = await run(write, business, args.pages, args.size, args.tasks)
                rates[name].append(rate)
                print(f"round {round_ + 1}: {name:11} {rate:,.0f} messages/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with postgres_server() as server:
        rates = asyncio.run(measure(server.create_database(), args))
    for (name, values), cpu in zip(rates.items(), CPU.values(), strict=True):
        print(
            f"{name}: median {statistics.median(values):,.0f} messages/s, "
            f"client CPU {statistics.median(cpu):.2f} s per 100k messages "
            f"[{min(values):,.0f}-{max(values):,.0f}] over {len(values)} rounds, "
            f"{args.pages} pages of {args.size}, {args.tasks} at a time"
        )


if __name__ == "__main__":
    main()
