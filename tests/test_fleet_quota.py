"""A fleet keeps every cabinet's quota busy, whatever its number of workers.

The quota is per cabinet: a cabinet that waits for a worker's free slot
leaves its quota unused for as long as it waits. With a fixed cap of 4
businesses per worker, 1, 2 or 4 workers over 20 cabinets synced 4, 8 or 16
of them at once, and the rest waited for those to finish (quota use 20%,
40%, 80% in ``benchmarks/fleet.py``). By default a worker now holds up to
64 businesses (``DEFAULT_MAX_BUSINESSES``), more than these 20.

What is asserted is the property behind the quota use, not a timed share of
it (that is ``python -m benchmarks.fleet --workers 1,2,4``, >= 95%): with a
quota that binds, every cabinet is held by a worker, and its sync started,
while no sync has ended yet. A barrier in the client's ``on_start`` hook
holds every call until each cabinet has made one, so the property does not
hang on timing: with the old cap of 4 the barrier is never reached (the 17th
cabinet is claimed only once another's sync has ended), for 1, 2 and 4
workers alike. Each cabinet is also claimed once and stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from tests.conftest import FAST
from tests.test_postgres import expected, stored
from yamarket_chats import ChatsClient, RateLimit
from yamarket_chats.errors import InvalidRequestError
from yamarket_chats.fleet import follow, run_worker
from yamarket_chats.hooks import CallInfo, ClientHooks
from yamarket_chats.limits import METHODS
from yamarket_chats.sinks import PostgresSink
from yamarket_chats.testing import FakeMarketConfig, run_fake_server

#: More cabinets than 4 workers held under the old cap of 4 each.
BUSINESSES = tuple(range(3001, 3021))
QUOTA, WINDOW = 3, 0.5  # get_chat_history requests per window per cabinet
#: 4 chats x 2 pages: each cabinet's sync needs 3 windows of its quota.
CONFIG = FakeMarketConfig(
    businesses=BUSINESSES,
    chats_per_business=4,
    messages_per_chat=200,
    quota_window=WINDOW,
    quotas={"get_chat_history": QUOTA, "get_chats": 1000},
)
#: How long the barrier holds a call before giving up (only when the property fails).
BARRIER_SECONDS = 20.0


class Barrier(ClientHooks):
    """Holds every call until each of ``businesses`` has started one (or for a bound)."""

    def __init__(self, businesses: tuple[int, ...]) -> None:
        self.missing = set(businesses)
        self.all_in = asyncio.Event()
        self.never_in: list[int] = []  #: who was missing when it gave up

    async def on_start(self, call: CallInfo) -> None:
        self.missing.discard(call.business_id)
        if not self.missing:
            self.all_in.set()
        try:
            await asyncio.wait_for(self.all_in.wait(), BARRIER_SECONDS)
        except asyncio.TimeoutError:  # some cabinet was not claimed while the others waited
            self.never_in = self.never_in or sorted(self.missing)
            self.all_in.set()  # the rest of the run goes on unheld


@pytest.mark.parametrize("workers", [1, 2, 4])
async def test_every_cabinet_is_held_at_once_whatever_the_number_of_workers(
    workers: int, pg_url: str, db: asyncpg.Connection
) -> None:
    limits: dict[str, RateLimit | None] = dict.fromkeys(METHODS)
    limits["get_chat_history"] = RateLimit(QUOTA, WINDOW)  # the quota, as Redis would share it
    barrier = Barrier(BUSINESSES)
    async with (
        run_fake_server(CONFIG) as fake,
        ChatsClient(
            api_key=fake.api_key, base_url=fake.url, limits=limits, hooks=barrier, **FAST
        ) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        sinks = [
            await stack.enter_async_context(PostgresSink(pg_url, max_size=4))
            for _ in range(workers)
        ]
        reports = await asyncio.wait_for(
            asyncio.gather(
                *(
                    run_worker(client, BUSINESSES, sink, worker_id=f"w{i}")
                    for i, sink in enumerate(sinks)
                )
            ),
            BARRIER_SECONDS + 60,
        )
        assert await stored(db) == expected(fake, BUSINESSES)  # every message once
    assert not barrier.never_in, f"{barrier.never_in} waited for another's sync to end"
    assert sum(r.synced for r in reports) == len(BUSINESSES) and not any(r.failed for r in reports)
    tokens = await db.fetch("SELECT token, owner FROM yamarket_chats.leases")
    assert sorted(tuple(t) for t in tokens) == [(1, None)] * len(BUSINESSES)  # claimed once


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
async def test_max_businesses_must_be_an_int_of_at_least_1(bad: object) -> None:
    # Refused before anything connects: neither the API nor the database is there.
    async with ChatsClient(api_key="ACMA:unused", base_url="http://127.0.0.1:9") as client:
        sink = PostgresSink("postgresql://nobody@127.0.0.1:9/none")
        with pytest.raises(InvalidRequestError, match="max_businesses"):
            await run_worker(client, [1], sink, max_businesses=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="max_businesses"):
            await follow(client, [1], sink, max_businesses=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [1, 2])
async def test_a_cap_bounds_the_businesses_synced_at_once(cap: int, pg_url: str) -> None:
    businesses = BUSINESSES[:4]
    config = FakeMarketConfig(businesses=businesses, chats_per_business=2, messages_per_chat=150)
    async with (
        run_fake_server(config) as fake,
        ChatsClient(api_key=fake.api_key, base_url=fake.url, **FAST) as client,
        PostgresSink(pg_url) as sink,
    ):
        fake.faults.add("latency", delay=0.02, operations={"get_chat_history"})
        report = await asyncio.wait_for(
            run_worker(client, businesses, sink, max_businesses=cap), 30
        )
        # Each sync, from its list of chats to its last page, ran under its lease.
        syncs = []
        for b in businesses:
            walk = fake.journal.entries(business_id=b)
            syncs.append((min(e.started for e in walk), max(e.finished or 0.0 for e in walk)))
    assert report.synced == len(businesses) and not report.failed
    at_once = max(sum(s <= t < e for s, e in syncs) for t, _ in syncs)
    assert 1 <= at_once <= cap, syncs
