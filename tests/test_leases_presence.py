"""Leases follow their holder's database session: gone, taken over at once; paused, fenced.

Each sink that takes leases keeps a presence (an idle connection) whose
server pid is written into its lease rows; a claimant may take a lease whose
holder's session is gone from ``pg_stat_activity``. These tests kill only the
session (``pg_terminate_backend``) or stop renewing (a paused holder), in one
process; tests/test_fleet_cli.py and tests/test_fleet.py kill whole processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import BUSINESS
from tests.waiting import until
from yamarket_chats import SinkLockedError
from yamarket_chats.fleet.leases import Holder, Lease, LeaseLostError, Leases
from yamarket_chats.ingest import ChatState
from yamarket_chats.sinks import PostgresSink
from yamarket_chats.sinks.postgres import PostgresSinkError


@contextlib.asynccontextmanager
async def two_sinks(pg_url: str) -> AsyncIterator[tuple[PostgresSink, PostgresSink]]:
    async with PostgresSink(pg_url) as a, PostgresSink(pg_url) as b:
        yield a, b


async def take(leases: Leases, timeout: float = 0) -> Lease:
    got = await leases.take(BUSINESS, timeout)
    assert isinstance(got, Lease), got
    return got


async def holder_pid(db: asyncpg.Connection) -> int | None:
    pid: int | None = await db.fetchval(
        "SELECT holder_pid FROM yamarket_chats.leases WHERE business_id = $1", BUSINESS
    )
    return pid


async def gone(db: asyncpg.Connection, pid: int) -> None:
    """Until the session ``pid`` has left ``pg_stat_activity``."""

    async def left() -> bool:
        return not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)

    await until(left, f"session {pid} never ended")


async def test_a_holder_whose_session_died_is_taken_over_at_once_and_fenced(
    pg_url: str, db: asyncpg.Connection
) -> None:
    async with two_sinks(pg_url) as (a, b):
        leases_a, leases_b = Leases(a, 30.0, "a"), Leases(b, 30.0, "b")
        lease_a = await take(leases_a)
        pid = await holder_pid(db)
        assert pid == await a.presence() and pid != await b.presence()
        assert isinstance(await leases_b.take(BUSINESS, 0), Holder)  # alive: held
        await db.execute("SELECT pg_terminate_backend($1)", pid)
        await gone(db, pid)
        lease_b = await take(leases_b)  # at once, 30 s before the lease would expire
        assert (lease_b.owner, lease_b.token) == ("b", lease_a.token + 1)
        # The old holder, still running, learns it at its next renewal or write.
        assert not await leases_a.renew(lease_a)
        with pytest.raises(LeaseLostError):
            await a.save_page(BUSINESS, 1, [], ChatState(1), lease=lease_a)
        await a.save_page(BUSINESS, 1, [], ChatState(1), lease=lease_b)  # the new holder writes
        await leases_a.release(lease_a, finished=False)  # a no-op: not its lease any more
        assert await db.fetchval("SELECT owner FROM yamarket_chats.leases") == "b"


async def test_a_lost_presence_is_replaced_and_the_renewal_records_it(
    pg_url: str, db: asyncpg.Connection
) -> None:
    async with two_sinks(pg_url) as (a, b):
        leases_a, leases_b = Leases(a, 30.0, "a"), Leases(b, 30.0, "b")
        lease = await take(leases_a)
        old = await holder_pid(db)
        assert old is not None
        await db.execute("SELECT pg_terminate_backend($1)", old)
        await gone(db, old)

        async def replaced() -> bool:  # the sink has seen its connection close
            return await a.presence() != old

        await until(replaced, "the presence was never replaced")
        assert await leases_a.renew(lease)
        new = await holder_pid(db)
        assert new == await a.presence() and new != old
        assert isinstance(await leases_b.take(BUSINESS, 0), Holder)  # alive again: held
        await leases_a.release(lease, finished=False)
        assert tuple(await db.fetchrow("SELECT owner, holder_pid FROM yamarket_chats.leases")) == (
            None,
            None,
        )


async def test_a_paused_holder_is_taken_over_only_when_its_lease_expires(
    pg_url: str, db: asyncpg.Connection
) -> None:
    async with two_sinks(pg_url) as (a, b):
        # A holds and never renews (a stopped VM, a long GC), its session alive.
        paused = await take(Leases(a, 0.5, "a"))
        expires = await db.fetchval("SELECT expires_at FROM yamarket_chats.leases")
        held = await Leases(b, 30.0, "b").take(BUSINESS, 0)
        assert isinstance(held, Holder) and held.owner == "a"
        assert held.seconds_left is not None and held.seconds_left > 0
        await take(Leases(b, 30.0, "b"), timeout=10)  # waits for the expiry
        claimed = await db.fetchval("SELECT claimed_at FROM yamarket_chats.leases")
        assert claimed >= expires  # the database's clock: not a moment before
        with pytest.raises(LeaseLostError):  # A wakes up: the fence refuses it
            await a.save_page(BUSINESS, 1, [], ChatState(1), lease=paused)


async def test_a_plain_sync_names_a_live_holder_and_a_small_pool_is_refused(
    pg_url: str,
) -> None:
    async with two_sinks(pg_url) as (a, b), a.claim(BUSINESS):
        with pytest.raises(SinkLockedError, match="at once if its process dies"):
            async with b.claim(BUSINESS):
                raise AssertionError("two holders")
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    try:
        async with PostgresSink(pool=pool) as sink:
            with pytest.raises(PostgresSinkError, match="max_size >= 2"):
                async with sink.claim(BUSINESS):
                    raise AssertionError("claimed with a pool of one")
    finally:
        await pool.close()


async def test_an_idle_session_limit_never_frees_a_live_holders_lease(
    pg_url: str, db: asyncpg.Connection
) -> None:
    """A DBA's idle_session_timeout (here 300 ms) ends the sink's idle pool connections;
    the presence turns it off for itself, so its holder keeps its leases."""
    sep = "&" if "?" in pg_url else "?"
    limited = f"{pg_url}{sep}idle_session_timeout=300&application_name=idle-limited"
    async with PostgresSink(limited) as a, PostgresSink(pg_url) as b:
        await take(Leases(a, 30.0, "a"))
        await a.query("SELECT 1")  # a pool connection besides the presence, left idle
        count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idle-limited'"

        async def ended() -> bool:  # the limit has ended every idle session it could
            return bool(await db.fetchval(count) == 1)

        await until(ended, "the idle sessions never ended")
        assert await db.fetchval(count) == 1  # the presence, still there
        assert isinstance(await Leases(b, 30.0, "b").take(BUSINESS, 0), Holder)


async def test_a_pid_the_database_cannot_show_is_never_recorded(
    pg_url: str, db: asyncpg.Connection
) -> None:
    """Behind a pooler the pid a connection is told is no backend's: recorded, it would
    make every live lease look free. Such a lease keeps to its expiry instead."""

    class Pooled(PostgresSink):
        async def presence(self) -> int:
            await super().presence()
            return 2**31 - 1  # no session has it

    async with Pooled(pg_url) as a, PostgresSink(pg_url) as b:
        await take(Leases(a, 30.0, "a"))
        assert await holder_pid(db) is None
        assert isinstance(await Leases(b, 30.0, "b").take(BUSINESS, 0), Holder)
