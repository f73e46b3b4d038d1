"""``yamarket-chats sync --postgres-url URL [--worker] [--follow --interval S]``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import BUSINESS
from tests.pg_server import PASSWORD, PostgresServer
from tests.test_postgres import expected, stored
from tests.waiting import until
from yamarket_chats.testing import FakeServer

ROOT = Path(__file__).resolve().parent.parent
BUSINESSES = (BUSINESS, 2002)


async def cli(fake: FakeServer, *args: str) -> asyncio.subprocess.Process:
    cmd = [sys.executable, "-m", "yamarket_chats.cli", "sync", *map(str, BUSINESSES)]
    return await asyncio.create_subprocess_exec(
        *cmd,
        "--base-url",
        fake.url,
        *args,
        cwd=ROOT,
        env={**os.environ, "YANDEX_MARKET_API_KEY": fake.api_key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_worker_syncs_into_postgres_and_never_prints_the_password(
    fake: FakeServer, pg: PostgresServer
) -> None:
    url = pg.create_database()
    proc = await cli(fake, "--postgres-url", url, "--worker")
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert sorted(line.split(":")[0] for line in lines) == [f"business {b}" for b in BUSINESSES]
    assert PASSWORD not in out.decode() + err.decode()
    conn = await asyncpg.connect(url)
    try:
        assert await stored(conn) == expected(fake, BUSINESSES)
    finally:
        await conn.close()

    wrong = await cli(fake, "--postgres-url", url.replace(PASSWORD, PASSWORD + "x"))
    out, err = await wrong.communicate()
    assert wrong.returncode == 1
    text = err.decode()
    assert "password authentication failed" in text and len(text.splitlines()) == 1
    assert PASSWORD not in text + out.decode() and "Traceback" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--worker"], "--worker needs --postgres-url"),
        (["--interval", "5"], "--interval takes seconds >= 0 and goes with --follow"),
    ],
)
async def test_fleet_options_are_checked_before_any_request(
    fake: FakeServer, tmp_path: Path, args: list[str], message: str
) -> None:
    proc = await cli(fake, "--db", str(tmp_path / "c.db"), *args)
    _, err = await proc.communicate()
    assert proc.returncode == 2 and message in err.decode()
    assert len(fake.journal) == 0


async def test_follow_runs_until_sigterm_then_releases_its_leases(
    fake: FakeServer, pg: PostgresServer
) -> None:
    url = pg.create_database()
    proc = await cli(fake, "--postgres-url", url, "--follow", "--interval", "0.2")
    assert proc.stdout is not None
    seen: list[str] = []
    while len(seen) < 4:  # each business synced twice: it follows
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, (await proc.communicate())[1].decode()
        seen.append(line.decode())
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 143, err.decode()  # 128 + SIGTERM
    conn = await asyncpg.connect(url)
    try:
        assert await stored(conn) == expected(fake, BUSINESSES)
        owners = await conn.fetch("SELECT owner FROM yamarket_chats.leases")
        assert [r[0] for r in owners] == [None, None]  # released, not left to lapse
    finally:
        await conn.close()


async def test_a_second_sync_of_a_business_exits_6_naming_the_holder(
    fake: FakeServer, pg: PostgresServer
) -> None:
    url = pg.create_database()
    fake.faults.add("latency", delay=1.0, operations={"get_chat_history"})
    first = await cli(fake, "--postgres-url", url, "--quiet")
    conn = await asyncpg.connect(url)
    try:
        for _ in range(3000):  # until the first sync holds its businesses
            if await conn.fetchval("SELECT to_regclass('yamarket_chats.leases')") and (
                await conn.fetchval(
                    "SELECT count(owner) FROM yamarket_chats.leases WHERE business_id = $1",
                    BUSINESS,
                )
            ):
                break
            await asyncio.sleep(0.01)
        second = await cli(fake, "--postgres-url", url)
        out, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 6, err.decode()
        text = err.decode()
        assert len(text.splitlines()) == 1 and "Traceback" not in text, text
        assert "in use by another sync" in text and f":{first.pid}:" in text, text
        assert "--lock-timeout" in text and PASSWORD not in text + out.decode()
        assert first.returncode is None  # still syncing
        first.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(first.communicate(), 30)
        assert first.returncode == 143, err.decode()  # 128 + SIGTERM
        owners = await conn.fetch("SELECT owner FROM yamarket_chats.leases")
        assert [r[0] for r in owners] == [None, None]  # released at once, not left to lapse
    finally:
        await conn.close()


@pytest.mark.parametrize("mode", ["sync", "worker"])
async def test_a_stopped_holder_keeps_its_leases_and_a_killed_one_is_taken_over_at_once(
    fake: FakeServer, pg: PostgresServer, mode: str
) -> None:
    """SIGSTOP: a rerun is refused (exit 6); SIGKILL: a rerun takes over at once.

    The lease is the default 30 s and the rerun's --lock-timeout 10: a rerun
    that finishes proves the takeover, not the lapse.
    """
    url = pg.create_database()
    fake.faults.add("latency", delay=0.3, operations={"get_chat_history"})
    extra = ["--worker"] if mode == "worker" else []
    first = await cli(fake, "--postgres-url", url, "--quiet", *extra)
    conn = await asyncpg.connect(url)
    try:

        async def holding_with_pages() -> bool:
            if not await conn.fetchval("SELECT to_regclass('yamarket_chats.messages')"):
                return False
            return bool(
                await conn.fetchval("SELECT count(*) FROM yamarket_chats.messages")
                and await conn.fetchval(
                    "SELECT count(*) FROM yamarket_chats.leases WHERE owner IS NOT NULL"
                )
            )

        await until(holding_with_pages, "the first run never stored a page")
        first.send_signal(signal.SIGSTOP)
        held = await conn.fetch(
            "SELECT business_id FROM yamarket_chats.leases WHERE owner IS NOT NULL"
        )
        refused = await cli(fake, "--postgres-url", url)  # a plain sync, lock-timeout 0
        _, err = await asyncio.wait_for(refused.communicate(), 30)
        assert refused.returncode == 6, err.decode()  # alive (if paused): not taken over
        assert "in use by another sync" in err.decode()
        first.send_signal(signal.SIGKILL)
        await first.wait()
        fake.faults.clear()
        killed_at = time.monotonic()
        rerun = await cli(fake, "--postgres-url", url, "--lock-timeout", "10", *extra)
        out, err = await asyncio.wait_for(rerun.communicate(), 30)
        assert rerun.returncode == 0, err.decode()
        assert time.monotonic() - killed_at < 10
        assert await stored(conn) == expected(fake, BUSINESSES)  # each message once
        leases = await conn.fetch("SELECT business_id, owner, token FROM yamarket_chats.leases")
        assert all(r["owner"] is None for r in leases)
        tokens = {r["business_id"]: r["token"] for r in leases}
        assert held and all(tokens[r[0]] >= 2 for r in held)  # taken over, not left
        assert PASSWORD not in out.decode() + err.decode()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
        await conn.close()
