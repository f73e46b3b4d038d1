"""A claim that commits just as its caller is cancelled is released, not left to expire.

SIGTERM or Ctrl-C cancels a sync or a worker at any await; the one that hurt
was the claiming statement's: PostgreSQL had committed the claim, the task
was cancelled before it saw the result, and nobody released a lease nobody
knew about (the next run exited 6 until it expired). These tests put the
cancellation exactly there: a sink whose claiming statement commits, then
cancels the task that awaits it, and lets that task run before returning.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.conftest import BUSINESS
from yamarket_chats import ChatsClient
from yamarket_chats.fleet import run_worker
from yamarket_chats.ingest import sync
from yamarket_chats.sinks import PostgresSink


class CancelAfterCommit(PostgresSink):
    """Cancels ``victim`` once a claiming statement has committed and got a lease.

    With ``in_flight``, the victim runs (and sees its cancellation) while the
    claim's result is still on its way to it; without, the cancellation is
    pending when the result arrives.
    """

    def __init__(self, *args: Any, in_flight: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = in_flight
        self.victim: asyncio.Future[Any] | None = None

    async def query(self, sql: str, *args: Any, fetch: Any = "val", doing: str = "") -> Any:
        result = await super().query(sql, *args, fetch=fetch, doing=doing)
        if doing == "claim a lease" and result is not None and self.victim is not None:
            victim, self.victim = self.victim, None
            victim.cancel()
            if self.in_flight:
                await asyncio.sleep(0)  # the victim's turn (if this task is the victim: raises)
        return result


async def lease_row(db: asyncpg.Connection) -> tuple[Any, ...]:
    row = await db.fetchrow(
        "SELECT owner, token, expires_at FROM yamarket_chats.leases WHERE business_id = $1",
        BUSINESS,
    )
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("in_flight", [True, False], ids=["result-in-flight", "result-arrived"])
async def test_a_plain_syncs_claim_cancelled_as_it_commits_is_released(
    client: ChatsClient, pg_url: str, db: asyncpg.Connection, in_flight: bool
) -> None:
    async with CancelAfterCommit(pg_url, in_flight=in_flight) as sink:
        syncing = asyncio.ensure_future(sync(client, [BUSINESS], sink))
        sink.victim = syncing
        with pytest.raises(asyncio.CancelledError):
            await syncing
        assert sink.victim is None  # the claim committed: cancelled right after
        assert await lease_row(db) == (None, 1, None)  # claimed once, released


@pytest.mark.parametrize("in_flight", [True, False], ids=["result-in-flight", "result-arrived"])
async def test_a_workers_claim_cancelled_as_it_commits_is_released(
    client: ChatsClient, pg_url: str, db: asyncpg.Connection, in_flight: bool
) -> None:
    async with CancelAfterCommit(pg_url, in_flight=in_flight) as sink:
        working = asyncio.ensure_future(run_worker(client, [BUSINESS], sink, worker_id="w-1"))
        sink.victim = working
        with pytest.raises(asyncio.CancelledError):
            await working
        assert sink.victim is None
        assert await lease_row(db) == (None, 1, None)
        finished = await db.fetchval(
            "SELECT finished_at FROM yamarket_chats.leases WHERE business_id = $1", BUSINESS
        )
        assert finished is None  # released unfinished: it synced nothing


async def test_a_claim_stuck_on_the_database_is_given_up_a_lease_time_after_a_cancel(
    pg_url: str,
) -> None:
    """A database that stops answering must not hold a shutdown for ever: the claim is
    waited out through the cancellation for one lease time, then abandoned (a claim it
    might still commit lapses, or ends with this process's sessions)."""
    from yamarket_chats.fleet.leases import Leases

    stuck = asyncio.Event()

    class Unanswered(PostgresSink):
        async def query(self, sql: str, *args: Any, fetch: Any = "val", doing: str = "") -> Any:
            if doing == "claim a lease":
                stuck.set()
                await asyncio.Event().wait()  # the answer never comes
            return await super().query(sql, *args, fetch=fetch, doing=doing)

    async with Unanswered(pg_url) as sink:
        leases = Leases(sink, 0.2, "stuck")
        claim = asyncio.ensure_future(leases.take(BUSINESS, 0))
        await stuck.wait()
        claim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(claim, 10)  # given up after 0.2 s, not never
