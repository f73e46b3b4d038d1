"""`PostgresSink` against a real PostgreSQL server the tests start (tests/pg_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from asyncio.subprocess import DEVNULL
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from tests import pg_server
from tests.conftest import BUSINESS
from tests.pg_server import PASSWORD, PostgresServer, server_or_skip
from yamarket_chats import ChatsClient, SinkLockedError
from yamarket_chats.fleet import run_worker
from yamarket_chats.ingest import ChatState, sync
from yamarket_chats.sinks import PostgresSink
from yamarket_chats.sinks.postgres import SCHEMA_VERSION, Lease, LeaseLostError, PostgresSinkError
from yamarket_chats.sinks.postgres._schema import MIGRATIONS
from yamarket_chats.testing import FakeMarketConfig, FakeServer, Journal, run_fake_server

ROOT = Path(__file__).resolve().parent.parent
BUSINESSES = (BUSINESS, 2002)  # the `fake` fixture: 5 chats x 230 messages each

Rows = tuple[set[tuple[Any, ...]], list[tuple[Any, ...]]]


def expected(fake: FakeServer, businesses: Sequence[int]) -> Rows:
    """The fake's chats and messages as rows of the sink's tables."""
    chats, messages = set(), []
    for b in businesses:
        for c in fake.market.chats(b):
            chats.add(
                (
                    b, c.chat_id, c.order_id, c.type, c.status, c.created_at, c.updated_at,
                    c.context_type, c.customer_name, c.customer_public_id, c.campaign_id,
                    c.order_id, c.return_id,
                )
            )  # fmt: skip
            for m in fake.market.messages(b, c.chat_id):
                payload = msgspec.to_builtins(m.payload) if m.payload else None
                messages.append(
                    (b, c.chat_id, m.message_id, m.created_at, m.sender, m.message, payload)
                )
    return chats, sorted(messages, key=lambda r: r[:3])


async def stored(conn: asyncpg.Connection) -> Rows:
    """The sink's tables; messages as a sorted list, so a duplicate would show."""
    chats = {tuple(r) for r in await conn.fetch("SELECT * FROM yamarket_chats.chats")}
    messages = [
        (*r[:6], json.loads(r[6]) if r[6] is not None else None)
        for r in await conn.fetch(
            "SELECT * FROM yamarket_chats.messages ORDER BY business_id, chat_id, message_id"
        )
    ]
    return chats, messages


def same_host(rows: Rows) -> Rows:
    """Rows with the fakes' hosts cut from file URLs (each fake serves its own files)."""
    chats, messages = rows

    def cut(payload: Any) -> Any:
        return payload and [{**p, "url": re.sub(r"^http://[^/]+", "", p["url"])} for p in payload]

    return chats, [(*m[:6], cut(m[6])) for m in messages]


Walk = tuple[float, float, str, int]  # start, end, worker, business


def walks(journals: dict[str, Journal]) -> dict[int, list[Walk]]:
    """Chat id -> its history walks: a request without a page token starts one."""
    out: dict[int, list[Walk]] = {}
    for worker, journal in journals.items():
        open_walks: dict[int, list[Any]] = {}
        for e in journal.entries("get_chat_history"):
            chat, end = int(e.query["chatId"]), e.finished or e.started
            if "pageToken" in e.query and chat in open_walks:
                open_walks[chat][1] = max(open_walks[chat][1], end)
                continue
            if chat in open_walks:
                out.setdefault(chat, []).append(tuple(open_walks.pop(chat)))  # type: ignore[arg-type]
            open_walks[chat] = [e.started, end, worker, e.business_id]
        for chat, walk in open_walks.items():
            out.setdefault(chat, []).append(tuple(walk))  # type: ignore[arg-type]
    return out


def assert_no_overlapping_walks(journals: dict[str, Journal]) -> dict[int, list[Walk]]:
    found = walks(journals)
    for chat, chat_walks in found.items():
        for a in chat_walks:
            for b in chat_walks:
                if a[2] < b[2]:  # two different workers
                    assert a[1] <= b[0] or b[1] <= a[0], f"chat {chat}: {a} overlaps {b}"
    return found


async def test_sync_equals_the_fake_and_resumes_from_checkpoints(
    client: ChatsClient, fake: FakeServer, pg_url: str, db: asyncpg.Connection
) -> None:
    async with PostgresSink(pg_url) as sink:
        report = await sync(client, BUSINESSES, sink)
    assert report.messages == 2 * 5 * 230 and report.pages == 10 * 3
    assert await stored(db) == expected(fake, BUSINESSES)
    states = await db.fetch("SELECT chat_id, last_message_id FROM yamarket_chats.sync_state")
    assert {r[0]: r[1] for r in states} == {
        c.chat_id: max(m.message_id for m in fake.market.messages(b, c.chat_id))
        for b in BUSINESSES
        for c in fake.market.chats(b)
    }
    chat = fake.market.chats(BUSINESS)[2]
    for n in range(3):
        fake.market.add_message(BUSINESS, chat.chat_id, f"new {n}")
    fake.journal.clear()
    async with PostgresSink(pg_url) as sink:
        report = await sync(client, BUSINESSES, sink, skip_unchanged=False)
    assert report.messages == 3
    assert await stored(db) == expected(fake, BUSINESSES)
    history = fake.journal.entries("get_chat_history", status=200)
    assert len(history) == 10  # one request per chat, each from its checkpoint
    first_ids = {e.body.get("messageIdFrom") for e in history}
    assert None not in first_ids


async def test_unchanged_rows_are_not_rewritten(
    client: ChatsClient, fake: FakeServer, pg_url: str, db: asyncpg.Connection
) -> None:
    async with PostgresSink(pg_url) as sink:
        await sync(client, [BUSINESS], sink)
        before = await db.fetch("SELECT xmin::text FROM yamarket_chats.chats ORDER BY chat_id")
        page = await client.get_chat_history(BUSINESS, fake.market.chats(BUSINESS)[0].chat_id)
        await sink.save_page(
            BUSINESS, fake.market.chats(BUSINESS)[0].chat_id, page.messages, ChatState(1)
        )
        chats = (await client.get_chats(BUSINESS)).chats
        await sink.save_chats(BUSINESS, chats)
    after = await db.fetch("SELECT xmin::text FROM yamarket_chats.chats ORDER BY chat_id")
    assert before == after  # the same row versions: an unchanged upsert writes nothing
    msgs = await db.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM yamarket_chats.messages WHERE chat_id = $1",
        fake.market.chats(BUSINESS)[0].chat_id,
    )
    assert msgs == 3  # the three pages of the sync, none rewritten by the replay


async def test_schema_is_created_once_and_versioned(pg_url: str, db: asyncpg.Connection) -> None:
    sinks = [PostgresSink(pg_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in sinks))  # four workers starting at once
    await asyncio.gather(*(s.close() for s in sinks))
    rows = await db.fetch("SELECT version FROM yamarket_chats.schema_version ORDER BY version")
    assert [r[0] for r in rows] == [1, 2] and SCHEMA_VERSION == 2
    await db.execute("INSERT INTO yamarket_chats.schema_version (version) VALUES (99)")
    with pytest.raises(PostgresSinkError, match="version 99, newer"):
        async with PostgresSink(pg_url) as sink:
            await sink.load_state(BUSINESS)
    async with PostgresSink(pg_url, schema="other_app") as sink:
        assert await sink.load_state(BUSINESS) == {}
    assert await db.fetchval("SELECT count(*) FROM other_app.schema_version") == SCHEMA_VERSION


async def test_a_version_1_schema_is_migrated_in_place(pg_url: str, db: asyncpg.Connection) -> None:
    await db.execute(
        "CREATE SCHEMA yamarket_chats; CREATE TABLE yamarket_chats.schema_version"
        " (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
        + MIGRATIONS[0][1].format(s="yamarket_chats")
        + "INSERT INTO yamarket_chats.schema_version (version) VALUES (1);"
        " INSERT INTO yamarket_chats.leases (business_id, owner, token, expires_at)"
        " VALUES (1001, 'an old worker', 7, now() + interval '1 hour')"
    )
    async with PostgresSink(pg_url) as sink:
        row = await sink.query(
            "SELECT owner, token, holder_pid FROM yamarket_chats.leases", fetch="row"
        )
        assert tuple(row) == ("an old worker", 7, None)  # kept; no session: only expiry frees it
        with pytest.raises(SinkLockedError, match="an old worker holds it"):
            async with sink.claim(1001):
                raise AssertionError("took an old worker's lease")
    versions = await db.fetch("SELECT version FROM yamarket_chats.schema_version ORDER BY 1")
    assert [r[0] for r in versions] == [1, 2]


async def test_workers_may_run_without_ddl_rights(
    client: ChatsClient, fake: FakeServer, pg_url: str, db: asyncpg.Connection
) -> None:
    async with PostgresSink(pg_url) as sink:
        await sink.open()  # the deployment's migration step, with DDL rights
    await db.execute(
        "CREATE ROLE worker LOGIN PASSWORD 'w-pass';"
        " GRANT USAGE ON SCHEMA yamarket_chats TO worker;"
        " GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA yamarket_chats TO worker;"
        f" REVOKE CREATE ON DATABASE {pg_url.rsplit('/', 1)[1]} FROM PUBLIC;"
        " REVOKE CREATE ON SCHEMA public FROM PUBLIC"
    )
    worker_url = pg_url.replace(f"yamarket:{PASSWORD}@", "worker:w-pass@")
    async with PostgresSink(worker_url) as sink:
        report = await sync(client, [BUSINESS], sink)
    assert report.messages == 5 * 230


async def test_a_pool_passed_in_is_shared_and_left_open(pg_url: str) -> None:
    async with PostgresSink(pg_url) as sink, PostgresSink(pg_url, synchronous_commit=True) as sync_:
        await sink.open()
        await sync_.open()
        assert await sink.pool.fetchval("SHOW synchronous_commit") == "off"
        assert await sync_.pool.fetchval("SHOW synchronous_commit") == "on"
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    try:
        async with PostgresSink(pool=pool) as sink:
            assert await sink.load_state(BUSINESS) == {}
            assert sink.pool is pool
            assert await pool.fetchval("SHOW synchronous_commit") == "on"  # left as it was
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_the_password_never_shows(pg: PostgresServer, pg_url: str) -> None:
    sink = PostgresSink(pg_url)
    assert PASSWORD not in repr(sink) and "***" in repr(sink)
    wrong = pg_url.replace(PASSWORD, "wrong-" + PASSWORD)
    with pytest.raises(PostgresSinkError) as failed:
        await PostgresSink(wrong).open()
    assert "password authentication failed" in str(failed.value)
    assert PASSWORD not in str(failed.value) and failed.value.__cause__ is None
    closed_port = pg_url.replace(f":{pg.port}/", ":1/")
    with pytest.raises(PostgresSinkError, match="cannot connect") as failed:
        await PostgresSink(closed_port).open()
    assert PASSWORD not in str(failed.value)
    for dsn in (
        "postgresql://u:s3cr%40t@db/x",
        "postgresql://u@db/x?sslmode=require&password=s3cr@t",
        "host=db user=u password='s3cr@t' dbname=x",
    ):
        assert "s3cr" not in repr(PostgresSink(dsn)), dsn
    with pytest.raises(ValueError, match="schema"):
        PostgresSink(pg_url, schema="Robert'); DROP TABLE students;--")


async def test_a_write_under_a_lost_lease_stores_nothing(
    client: ChatsClient, fake: FakeServer, pg_url: str, db: asyncpg.Connection
) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    page = await client.get_chat_history(BUSINESS, chat_id)
    async with PostgresSink(pg_url) as sink:
        await sink.open()
        await db.execute(
            "INSERT INTO yamarket_chats.leases (business_id, owner, token) VALUES ($1, 'b', 2)",
            BUSINESS,
        )
        stale = Lease(BUSINESS, "a", 1)
        with pytest.raises(LeaseLostError, match=str(BUSINESS)):
            await sink.save_page(BUSINESS, chat_id, page.messages, ChatState(1), lease=stale)
        with pytest.raises(LeaseLostError):
            await sink.save_chats(BUSINESS, (await client.get_chats(BUSINESS)).chats, lease=stale)
        assert await db.fetchval("SELECT count(*) FROM yamarket_chats.messages") == 0
        assert await db.fetchval("SELECT count(*) FROM yamarket_chats.sync_state") == 0
        assert await db.fetchval("SELECT count(*) FROM yamarket_chats.chats") == 0
        held = Lease(BUSINESS, "b", 2)
        await sink.save_page(BUSINESS, chat_id, page.messages, ChatState(1), lease=held)
    assert await db.fetchval("SELECT count(*) FROM yamarket_chats.messages") == len(page.messages)


def test_missing_server_binaries_skip_here_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_server, "find_bin_dir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        server_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI is set: \.ci/run should have"):
        server_or_skip()


def test_importing_the_package_does_not_import_asyncpg() -> None:
    code = (
        "import sys, yamarket_chats, yamarket_chats.sinks, yamarket_chats.fleet, "
        "yamarket_chats.cli; assert 'asyncpg' not in sys.modules, 'asyncpg imported'"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_sink_loads_the_leases_but_not_the_fleets_worker() -> None:
    code = (
        "import sys, yamarket_chats.sinks.postgres; "
        "assert 'yamarket_chats.fleet.leases' in sys.modules; "
        "assert 'yamarket_chats.fleet._worker' not in sys.modules, 'the worker was imported'; "
        "from yamarket_chats.fleet import run_worker, LeaseLostError; "
        "from yamarket_chats.sinks.postgres import LeaseLostError as same; "
        "assert same is LeaseLostError"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_query_runs_one_statement_with_the_sinks_errors(pg_url: str) -> None:
    async with PostgresSink(pg_url) as sink:
        assert await sink.query("SELECT $1::int + 1", 41) == 42
        row = await sink.query("SELECT 1 AS a, 2 AS b", fetch="row")
        assert (row["a"], row["b"]) == (1, 2)
        rows = await sink.query("SELECT generate_series(1, 3)", fetch="all")
        assert [r[0] for r in rows] == [1, 2, 3]
        with pytest.raises(PostgresSinkError) as failed:
            await sink.query(f"SELECT '{PASSWORD}'::int", doing="count sheep")
    text = str(failed.value)
    assert text.startswith("PostgreSQL at 127.0.0.1:") and ": cannot count sheep: " in text, text
    assert PASSWORD not in text and "***" in text and failed.value.__cause__ is None


# -- crashes ------------------------------------------------------------------------

KILL_CONFIG = FakeMarketConfig(
    businesses=(1001, 2002, 3003), chats_per_business=4, messages_per_chat=1000
)


async def test_ten_sigkills_lose_nothing_and_store_nothing_twice(
    pg_url: str, db: asyncpg.Connection
) -> None:
    """SIGKILL a sync process at 10 seeded moments, resume each time; compare with the fake."""
    rng = random.Random(12)
    businesses = KILL_CONFIG.businesses
    total = len(businesses) * 4 * 1000
    # Kill when the table holds at least this many messages (never the last quarter of
    # the run, so every kill lands mid-sync), plus a random few milliseconds.
    thresholds = sorted(rng.sample(range(1, int(total * 0.75)), 10))
    async with run_fake_server(KILL_CONFIG) as fake:
        fake.faults.add("latency", delay=0.06, operations={"get_chat_history"})
        cmd = [sys.executable, "-m", "tests.fleet_worker", fake.url, fake.api_key, pg_url]
        cmd += map(str, businesses)
        # Each resume takes the killed sync's leases over at once (its database
        # session died with it), long before they could lapse: a resume that had
        # to wait for the lapse would fail after its lock timeout (exit 6).
        cmd += ["--lease", "30", "--lock-timeout", "10"]
        counts = []
        for threshold in thresholds:
            proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=DEVNULL)
            count = 0
            while proc.returncode is None:
                if await db.fetchval("SELECT to_regclass('yamarket_chats.messages')"):
                    count = await db.fetchval("SELECT count(*) FROM yamarket_chats.messages")
                if count >= threshold:
                    await asyncio.sleep(rng.uniform(0, 0.03))
                    break
                await asyncio.sleep(0.005)
            assert proc.returncode is None, "the sync finished before its kill"
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            counts.append(await db.fetchval("SELECT count(*) FROM yamarket_chats.messages"))
        print(f"messages stored at each kill: {counts}")
        assert all(c < total for c in counts), counts  # each kill interrupted a sync
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=DEVNULL)
        assert await proc.wait() == 0
        assert await stored(db) == expected(fake, businesses)
        # Fetched again: at most the pages in flight at each kill (4 chats x 3 businesses).
        pages = len(fake.journal.entries("get_chat_history", status=200))
        print(f"history pages served: {pages} for {total // 100} pages of data")
        assert total // 100 <= pages <= total // 100 + 10 * 4 * 3, pages
        last = {
            c.chat_id: max(m.message_id for m in fake.market.messages(b, c.chat_id))
            for b in businesses
            for c in fake.market.chats(b)
        }
    states = await db.fetch("SELECT chat_id, last_message_id FROM yamarket_chats.sync_state")
    assert {r[0]: r[1] for r in states} == last


async def test_a_nul_character_does_not_poison_the_sync(
    client: ChatsClient, fake: FakeServer, pg_url: str, db: asyncpg.Connection
) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.market.add_message(BUSINESS, chat_id, "before\x00after")
    async with PostgresSink(pg_url) as sink:
        await sync(client, [BUSINESS], sink)
    text = await db.fetchval(
        "SELECT message FROM yamarket_chats.messages WHERE chat_id = $1"
        " ORDER BY message_id DESC LIMIT 1",
        chat_id,
    )
    assert text == "before\ufffdafter"  # PostgreSQL text cannot hold NUL


# -- one sync per business ------------------------------------------------------------

LOCKED = FakeMarketConfig(businesses=(1001, 2002), chats_per_business=3, messages_per_chat=800)
#: History pages of one business of LOCKED (100 messages a page).
LOCKED_PAGES = 3 * 8


@contextlib.asynccontextmanager
async def slow_clients(n: int) -> AsyncIterator[list[tuple[FakeServer, ChatsClient]]]:
    """``n`` fakes seeded alike, each with its client: each journal is one sync's requests."""
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for _ in range(n):
            fake = await stack.enter_async_context(run_fake_server(LOCKED))
            fake.faults.add("latency", delay=0.05, operations={"get_chat_history"})
            client = ChatsClient(api_key=fake.api_key, base_url=fake.url)
            out.append((fake, await stack.enter_async_context(client)))
        yield out


async def holder(db: asyncpg.Connection, business_id: int) -> str:
    """The owner of a business's lease, once someone holds it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if await db.fetchval("SELECT to_regclass('yamarket_chats.leases')"):
            owner: str | None = await db.fetchval(
                "SELECT owner FROM yamarket_chats.leases WHERE business_id = $1", business_id
            )
            if owner:
                return owner
        await asyncio.sleep(0.005)
    raise AssertionError(f"nobody took the lease on business {business_id}")


def span(journal: Journal, business_id: int) -> tuple[float, float]:
    """From the first request for a business to the end of the last one."""
    entries = journal.entries(business_id=business_id)
    return min(e.started for e in entries), max(e.finished or e.started for e in entries)


async def test_a_second_sync_of_a_business_is_refused_naming_the_holder(
    pg_url: str, db: asyncpg.Connection
) -> None:
    async with (
        slow_clients(2) as [(fake_a, client_a), (fake_b, client_b)],
        PostgresSink(pg_url) as sink_a,
        PostgresSink(pg_url) as sink_b,
    ):
        first = asyncio.ensure_future(sync(client_a, [1001], sink_a))
        owner = await holder(db, 1001)
        with pytest.raises(SinkLockedError) as refused:
            await sync(client_b, [1001], sink_b)  # lock_timeout=0: at once
        assert not first.done()
        report = await first
    text = str(refused.value)
    print(text)
    assert "business 1001" in text and "in use by another sync" in text, text
    assert owner in text and f":{os.getpid()}:" in text and "lock_timeout" in text
    assert PASSWORD not in text
    assert len(fake_b.journal) == 0  # refused before any request
    assert report.messages == 3 * 800
    assert same_host(await stored(db)) == same_host(expected(fake_a, [1001]))
    assert await db.fetchval("SELECT owner FROM yamarket_chats.leases") is None  # released


async def test_two_syncs_of_one_business_take_turns(pg_url: str, db: asyncpg.Connection) -> None:
    businesses = LOCKED.businesses
    async with (
        slow_clients(2) as [(fake_a, client_a), (fake_b, client_b)],
        PostgresSink(pg_url, lock_timeout=60) as sink_a,
        PostgresSink(pg_url, lock_timeout=60) as sink_b,
    ):
        reports = await asyncio.gather(
            sync(client_a, businesses, sink_a), sync(client_b, businesses, sink_b)
        )
    journals = {"a": fake_a.journal, "b": fake_b.journal}
    found = assert_no_overlapping_walks(journals)
    assert len(found) == 2 * 3
    for business in businesses:  # one after the other, never both at once
        a, b = span(fake_a.journal, business), span(fake_b.journal, business)
        assert a[1] <= b[0] or b[1] <= a[0], (business, a, b)
    assert same_host(await stored(db)) == same_host(expected(fake_a, businesses))
    assert sum(r.messages for r in reports) == 2 * 3 * 800  # each message written once
    pages = sum(len(j.entries("get_chat_history", status=200)) for j in journals.values())
    # Every page once; the second sync of a business asks at most once per chat.
    assert 2 * LOCKED_PAGES <= pages <= 2 * LOCKED_PAGES + 2 * 3, pages


async def test_a_sync_and_a_fleet_worker_never_share_a_business(
    pg_url: str, db: asyncpg.Connection
) -> None:
    async with (
        slow_clients(2) as [(fake_w, client_w), (fake_s, client_s)],
        PostgresSink(pg_url) as worker_sink,
        PostgresSink(pg_url) as sync_sink,
        PostgresSink(pg_url, lock_timeout=60) as waiting_sink,
    ):
        # A worker holds 1001: a sync is refused, or waits its turn.
        worker = asyncio.ensure_future(run_worker(client_w, [1001], worker_sink, worker_id="w-7"))
        assert await holder(db, 1001) == "w-7"
        with pytest.raises(SinkLockedError, match="w-7 holds it"):
            await sync(client_s, [1001], sync_sink)
        waited = await sync(client_s, [1001], waiting_sink)
        assert (await worker).synced == 1
        # A sync holds 2002: a worker waits for it, then syncs it itself.
        first = asyncio.ensure_future(sync(client_s, [2002], sync_sink))
        await holder(db, 2002)
        worker_report = await run_worker(client_w, [2002], worker_sink, worker_id="w-8")
        await first
    assert worker_report.synced == 1
    assert_no_overlapping_walks({"w": fake_w.journal, "s": fake_s.journal})
    assert span(fake_w.journal, 1001)[1] <= span(fake_s.journal, 1001)[0]
    assert span(fake_s.journal, 2002)[1] <= span(fake_w.journal, 2002)[0]
    assert waited.messages == 0  # the worker had stored it all
    assert same_host(await stored(db)) == same_host(expected(fake_w, LOCKED.businesses))


async def test_syncs_of_different_businesses_run_side_by_side(
    pg_url: str, db: asyncpg.Connection
) -> None:
    async with (
        slow_clients(2) as [(fake_a, client_a), (fake_b, client_b)],
        PostgresSink(pg_url) as sink_a,
        PostgresSink(pg_url) as sink_b,
    ):
        syncing = asyncio.ensure_future(sync(client_a, [1001], sink_a))
        working = asyncio.ensure_future(run_worker(client_b, [2002], sink_b, worker_id="w-2"))
        await holder(db, 1001)
        await holder(db, 2002)
        held = await db.fetch("SELECT business_id, owner FROM yamarket_chats.leases")
        report, worker_report = await asyncio.gather(syncing, working)
    assert all(owner for _, owner in held) and len(held) == 2  # both held at once
    assert report.messages == 3 * 800 and worker_report.synced == 1
    a, b = span(fake_a.journal, 1001), span(fake_b.journal, 2002)
    assert a[0] < b[1] and b[0] < a[1]  # in parallel
    assert same_host(await stored(db)) == same_host(expected(fake_a, LOCKED.businesses))


def test_a_sinks_lock_options_are_checked() -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        PostgresSink("postgresql://u@db/x", lock_timeout=-1)
    with pytest.raises(ValueError, match="lease_seconds"):
        PostgresSink("postgresql://u@db/x", lease_seconds=0)


async def test_entering_the_sink_opens_it_so_a_dead_database_fails_before_any_request() -> None:
    from tests.servers import free_port

    sink = PostgresSink(f"postgresql://sync:{PASSWORD}@127.0.0.1:{free_port()}/market")
    with pytest.raises(PostgresSinkError, match="cannot connect") as failed:
        async with sink:
            raise AssertionError("entered a sink whose database is down")
    assert PASSWORD not in str(failed.value)
