"""A plain sync of many businesses: a bounded number at once, fed from a queue."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.servers import RedisServer
from yamarket_chats import ChatsClient, InvalidRequestError
from yamarket_chats.ingest import SyncReport, sync
from yamarket_chats.sinks import SQLiteSink
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

ROOT = Path(__file__).resolve().parent.parent
MANY = tuple(range(1, 301))
CONFIG = FakeMarketConfig(businesses=MANY, chats_per_business=2, messages_per_chat=5)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with run_fake_server(CONFIG) as server:
        yield server


class Running:
    """A `SyncObserver` counting the businesses in progress."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.ended: list[int] = []

    def business_started(self, business_id: int, leased: bool) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def business_ended(self, business_id: int, error: BaseException | None) -> None:
        self.now -= 1
        self.ended.append(business_id)

    def page_saved(self, business_id: int, messages: int) -> None:
        pass


@pytest.mark.parametrize("at_once", [1, 7, None])
async def test_a_bounded_number_of_businesses_at_once_and_every_one_synced(
    client: ChatsClient, tmp_path: Path, at_once: int | None
) -> None:
    running, seen = Running(), []

    def progress(report: SyncReport) -> None:
        seen.append((report.businesses_done, report.businesses_total))

    async with SQLiteSink(tmp_path / "c.db") as sink:
        report = await sync(client, [*MANY, 1], sink, max_businesses=at_once, observer=running,
                            progress=progress)  # fmt: skip
    assert running.most == (at_once or len(MANY))
    assert sorted(running.ended) == list(MANY)  # each once, duplicates dropped
    assert running.ended[: len(MANY) // 2] == list(MANY[: len(MANY) // 2]) or at_once != 1
    assert (report.businesses_done, report.businesses_total) == (300, 300)
    assert report.messages == 300 * 2 * 5 and report.chats_done == report.chats_total == 600
    assert seen[-1] == (300, 300) and all(total == 300 for _, total in seen)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
async def test_max_businesses_is_checked_before_any_request(
    client: ChatsClient, fake: FakeServer, tmp_path: Path, bad: object
) -> None:
    async with SQLiteSink(tmp_path / "c.db") as sink:
        with pytest.raises(InvalidRequestError, match="max_businesses must be"):
            await sync(client, MANY, sink, max_businesses=bad)  # type: ignore[arg-type]
    assert len(fake.journal) == 0


def cli_env(fake: FakeServer) -> dict[str, str]:
    return {**os.environ, "YANDEX_MARKET_API_KEY": fake.api_key,
            "YANDEX_MARKET_BASE_URL": fake.url}  # fmt: skip


async def test_the_cli_syncs_many_businesses_through_redis_and_a_sigint_ends_it_at_once(
    fake: FakeServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    ids = [str(b) for b in MANY]
    command = [
        sys.executable,
        "-m",
        "yamarket_chats",
        "sync",
        *ids,
        "--db",
        str(db),
        "--redis-url",
        redis_server.url,
    ]  # fmt: skip  (64 businesses at once)
    proc = await asyncio.create_subprocess_exec(
        *command, "-q", cwd=ROOT, env=cli_env(fake), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (300 * 2 * 5,)

    db.unlink()
    fake.faults.add("latency", delay=0.2, operations=["get_chat_history"])  # a long run
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=cli_env(fake), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 60)  # the first progress line
    assert b"businesses" in line, line
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 130
    assert time.monotonic() - sent < 5  # the benchmark measures it: well under 2 s
