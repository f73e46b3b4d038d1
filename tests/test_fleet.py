"""Workers sharing cabinets through leases in a real PostgreSQL (`yamarket_chats.fleet`).

Each worker process talks to its own fake server, all seeded alike (the same
chats and messages), so each fake's journal is one worker's requests: the
walks of a chat by two workers can be compared in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.test_postgres import assert_no_overlapping_walks, expected, same_host, stored
from yamarket_chats import ChatsClient, SQLiteSink
from yamarket_chats.fleet import follow, run_worker
from yamarket_chats.ingest import sync
from yamarket_chats.sinks import PostgresSink
from yamarket_chats.testing import FakeMarketConfig, FakeServer, Journal, run_fake_server

ROOT = Path(__file__).resolve().parent.parent
BUSINESSES = (1001, 1002, 1003, 1004, 1005, 1006)
FLEET = FakeMarketConfig(businesses=BUSINESSES, chats_per_business=3, messages_per_chat=500)
PAGE_DELAY = 0.08  # latency of each history page, so that syncs overlap in time


@contextlib.asynccontextmanager
async def fakes(n: int, config: FakeMarketConfig = FLEET) -> AsyncIterator[list[FakeServer]]:
    """``n`` fakes with the same seeded data, each with slow history pages."""
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(run_fake_server(config)) for _ in range(n)]
        for fake in servers:
            fake.faults.add("latency", delay=PAGE_DELAY, operations={"get_chat_history"})
        truth = same_host(expected(servers[0], config.businesses))
        assert all(same_host(expected(f, config.businesses)) == truth for f in servers[1:])
        yield servers


async def start_workers(
    servers: Sequence[FakeServer], pg_url: str, *extra: str
) -> list[asyncio.subprocess.Process]:
    """One worker process per fake (ids w0, w1, ...), all starting at the same moment.

    Each worker's sessions carry its id as their ``application_name``.
    """
    start = time.time() + 1.5
    procs = []
    for i, fake in enumerate(servers):
        url = f"{pg_url}?application_name=w{i}"
        cmd = [sys.executable, "-m", "tests.fleet_worker", fake.url, fake.api_key, url]
        cmd += [*map(str, BUSINESSES), "--worker", "--id", f"w{i}", "--start", str(start)]
        cmd += ["--max-businesses", "2", *extra]
        procs.append(
            await asyncio.create_subprocess_exec(
                *cmd, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        )
    return procs


async def report_of(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return result


#: History pages of a full sync of FLEET: 100 messages a page, the last without a token.
PAGES = len(BUSINESSES) * FLEET.chats_per_business * 5


def history_pages(journals: dict[str, Journal]) -> int:
    return sum(len(j.entries("get_chat_history", status=200)) for j in journals.values())


def businesses_in(journal: Journal) -> set[int]:
    return {e.business_id for e in journal.entries("get_chats") if e.business_id is not None}


async def test_two_workers_split_the_cabinets_and_never_share_one(
    pg_url: str, db: asyncpg.Connection
) -> None:
    async with fakes(2) as servers:
        procs = await start_workers(servers, pg_url)
        reports = [await report_of(p) for p in procs]
        assert same_host(await stored(db)) == same_host(expected(servers[0], BUSINESSES))
        journals = {f"w{i}": fake.journal for i, fake in enumerate(servers)}
        found = assert_no_overlapping_walks(journals)
    assert len(found) == len(BUSINESSES) * 3
    assert history_pages(journals) == PAGES  # every page fetched once
    split = [businesses_in(j) for j in journals.values()]
    assert not split[0] & split[1] and split[0] | split[1] == set(BUSINESSES), split
    assert [r["synced"] for r in reports] == [len(s) for s in split]
    assert all(r["synced"] >= 1 for r in reports), reports  # both took a share
    leases = await db.fetch("SELECT owner, finished_at FROM yamarket_chats.leases")
    assert len(leases) == len(BUSINESSES)
    assert all(owner is None and finished for owner, finished in leases)


async def test_a_killed_workers_businesses_are_finished_by_the_others(
    pg_url: str, db: asyncpg.Connection
) -> None:
    lease = 30.0  # taken over long before it could lapse: its session died with w0
    async with fakes(3) as servers:
        procs = await start_workers(servers, pg_url, "--lease", str(lease))
        # Kill w0 once it has committed pages of a business it holds.
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "w0 never held a business with saved pages"
            await asyncio.sleep(0.01)
            if await db.fetchval("SELECT to_regclass('yamarket_chats.leases')") and (
                await db.fetchval(
                    "SELECT count(*) FROM yamarket_chats.leases l WHERE owner = 'w0'"
                    " AND EXISTS (SELECT FROM yamarket_chats.sync_state s"
                    "   WHERE s.business_id = l.business_id)"
                )
            ):
                break
        # Stopped first, so that what it held and committed can be read before it
        # dies (nobody takes a live worker's leases); once each of its sessions waits
        # for it (idle, or for the rest of a statement it was sending when stopped),
        # nothing more of it can commit.
        procs[0].send_signal(signal.SIGSTOP)
        while await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'w0'"
            " AND wait_event IS DISTINCT FROM 'ClientRead'"
        ):
            assert time.monotonic() < deadline, "w0's statements never finished"
            await asyncio.sleep(0.01)
        held = [
            r[0]
            for r in await db.fetch(
                "SELECT business_id FROM yamarket_chats.leases WHERE owner = 'w0'"
            )
        ]
        checkpoints = {
            r[0]: r[1]
            for r in await db.fetch(
                "SELECT chat_id, last_message_id FROM yamarket_chats.sync_state"
                " WHERE business_id = ANY($1::bigint[])",
                held,
            )
        }
        assert held and checkpoints
        killed_at = time.monotonic()  # before: a survivor may take over before wait() returns
        procs[0].kill()
        await procs[0].wait()
        reports = [await report_of(p) for p in procs[1:]]
        assert same_host(await stored(db)) == same_host(expected(servers[0], BUSINESSES))
        journals = {f"w{i}": fake.journal for i, fake in enumerate(servers)}
        assert_no_overlapping_walks(journals)
    leases = await db.fetch("SELECT business_id, owner, token FROM yamarket_chats.leases")
    assert all(r["owner"] is None for r in leases)
    assert not any(r["failed"] for r in reports)
    resumed = 0  # walks a survivor resumed in the middle of a chat
    for business in held:
        # Taken over as soon as w0 was dead, not when its lease lapsed (it was
        # renewed every third of the lease, so at least two thirds were left)...
        takeover = [
            e for name in ("w1", "w2") for e in journals[name].entries(business_id=business)
        ]
        assert takeover and killed_at < min(e.started for e in takeover) < killed_at + lease / 3
        # ...and continued from the checkpoints the dead worker had committed.
        for e in takeover:
            if e.operation == "get_chat_history" and "pageToken" not in e.query:
                last = checkpoints.get(int(e.query["chatId"]))
                assert e.body.get("messageIdFrom") == (None if last is None else last + 1)
                resumed += last is not None
    assert resumed >= 1
    # Fetched twice: only the pages the dead worker had in flight (2 businesses x 3 chats).
    assert PAGES <= history_pages(journals) <= PAGES + 2 * 3
    tokens = {r["business_id"]: r["token"] for r in leases}
    assert all(tokens[b] >= 2 for b in held)  # claimed by w0, then by a survivor


async def test_follow_keeps_the_mirror_fresh(pg_url: str, db: asyncpg.Connection) -> None:
    config = FakeMarketConfig(businesses=(1001, 1002), chats_per_business=2, messages_per_chat=30)
    async with (
        run_fake_server(config) as fake,
        ChatsClient(api_key=fake.api_key, base_url=fake.url) as client,
        PostgresSink(pg_url) as sink,
    ):
        await sink.open()
        stop = asyncio.Event()
        worker = asyncio.ensure_future(
            run_worker(client, config.businesses, sink, follow=True, interval=0.2, stop=stop)
        )
        total = 2 * 2 * 30

        async def wait_for(count: int) -> None:
            for _ in range(500):
                got = await db.fetchval("SELECT count(*) FROM yamarket_chats.messages")
                if got == count:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"{got} messages stored, expected {count}")

        await wait_for(total)
        chat = fake.market.chats(1002)[1]
        fake.market.add_message(1002, chat.chat_id, "a new question")
        await wait_for(total + 1)
        stop.set()
        report = await asyncio.wait_for(worker, 10)
        assert await stored(db) == expected(fake, config.businesses)
    assert report.synced >= 3 and not report.failed
    assert await db.fetchval("SELECT count(*) FROM yamarket_chats.leases WHERE owner IS NULL") == 2


async def test_follow_into_sqlite(tmp_path: Path) -> None:
    config = FakeMarketConfig(businesses=(1001,), chats_per_business=2, messages_per_chat=10)
    async with (
        run_fake_server(config) as fake,
        ChatsClient(api_key=fake.api_key, base_url=fake.url) as client,
        SQLiteSink(tmp_path / "c.db") as sink,
    ):
        stop = asyncio.Event()
        synced: list[int] = []

        def on_synced(business_id: int, report: Any) -> None:
            synced.append(report.messages)
            if len(synced) == 1:
                fake.market.add_message(1001, fake.market.chats(1001)[0].chat_id, "again")
            if len(synced) == 3:
                stop.set()

        report = await asyncio.wait_for(
            follow(client, [1001], sink, interval=0.05, stop=stop, on_synced=on_synced), 10
        )
    assert synced == [20, 1, 0] and report.synced == 3


async def test_an_api_error_fails_one_business_not_the_worker(pg_url: str) -> None:
    config = FakeMarketConfig(
        businesses=(1001, 1002), api_keys={"ACMA:only-1001": frozenset({1001})}
    )
    async with (
        run_fake_server(config) as fake,
        ChatsClient(api_key=fake.api_key, base_url=fake.url, max_retries=0) as client,
        PostgresSink(pg_url) as sink,
    ):
        report = await asyncio.wait_for(run_worker(client, [1001, 1002], sink), 20)
        row = await sink.pool.fetchrow(
            "SELECT error, failed_at, finished_at FROM yamarket_chats.leases"
            " WHERE business_id = 1002"
        )
    assert report.synced == 1 and list(report.failed) == [1002]
    assert "403" in report.failed[1002] and "403" in row["error"]
    assert row["failed_at"] is not None and row["finished_at"] is None


async def test_a_worker_whose_lease_was_taken_over_stops_writing(
    pg_url: str, db: asyncpg.Connection
) -> None:
    config = FakeMarketConfig(businesses=(1001,), chats_per_business=1, messages_per_chat=1000)
    async with (
        run_fake_server(config) as fake,
        ChatsClient(api_key=fake.api_key, base_url=fake.url) as client,
        PostgresSink(pg_url) as sink,
    ):
        fake.faults.add("latency", delay=0.1, operations={"get_chat_history"})
        worker = asyncio.ensure_future(run_worker(client, [1001], sink, lease_seconds=30))
        for _ in range(1000):  # until the first page is stored
            await asyncio.sleep(0.01)
            if await db.fetchval("SELECT to_regclass('yamarket_chats.messages')") and (
                await db.fetchval("SELECT count(*) FROM yamarket_chats.messages")
            ):
                break
        # Another worker takes the business over (as after a lapse): a newer token.
        await db.execute(
            "UPDATE yamarket_chats.leases SET owner = 'other', token = token + 1,"
            " expires_at = now() + interval '1 minute', finished_at = now()"
        )
        stored_then = await db.fetchval("SELECT count(*) FROM yamarket_chats.messages")
        report = await asyncio.wait_for(worker, 20)
        assert await db.fetchval("SELECT count(*) FROM yamarket_chats.messages") == stored_then
    assert report.leases_lost == 1 and report.synced == 0
    assert await db.fetchval("SELECT owner FROM yamarket_chats.leases") == "other"


async def test_a_cancelled_worker_or_sync_releases_its_lease_at_once(
    pg_url: str, db: asyncpg.Connection
) -> None:
    config = FakeMarketConfig(businesses=(1001, 1002), chats_per_business=1, messages_per_chat=1000)
    async with (
        run_fake_server(config) as fake,
        ChatsClient(api_key=fake.api_key, base_url=fake.url) as client,
        PostgresSink(pg_url, lease_seconds=60) as sink,
    ):
        fake.faults.add("latency", delay=0.1, operations={"get_chat_history"})
        worker = asyncio.ensure_future(
            run_worker(client, [1001], sink, lease_seconds=60, worker_id="w-1")
        )
        syncing = asyncio.ensure_future(sync(client, [1002], sink))
        deadline = time.monotonic() + 30
        while True:  # until each holds its business and has stored a page of it
            assert time.monotonic() < deadline, "the syncs never stored a page of each business"
            await asyncio.sleep(0.01)
            if await db.fetchval("SELECT to_regclass('yamarket_chats.messages')") and (
                await db.fetchval("SELECT count(DISTINCT business_id) FROM yamarket_chats.messages")
                == 2
            ):
                break
        held = await db.fetch("SELECT owner FROM yamarket_chats.leases ORDER BY business_id")
        worker.cancel()
        syncing.cancel()
        for task in (worker, syncing):
            with pytest.raises(asyncio.CancelledError):
                await task
        rows = await db.fetch(
            "SELECT owner, expires_at, finished_at FROM yamarket_chats.leases ORDER BY business_id"
        )
    assert held[0]["owner"] == "w-1" and held[1]["owner"] is not None
    # Released, not left to lapse after the 60 s lease; and not counted as a finished sync.
    assert [tuple(r) for r in rows] == [(None, None, None), (None, None, None)]
