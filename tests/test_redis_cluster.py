"""Quotas shared through a real Redis Cluster: three nodes the tests start themselves.

Every script call touches the keys of one business only, all in one slot
(the business id is the keys' hash tag); before, a take's keys crossed slots
and a cluster refused every call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as redis

from tests.conftest import BUSINESS
from tests.servers import RedisCluster, RedisServer
from tests.test_redis_limits import NO_BUCKET, answer_headers, run_workers, scaled
from yamarket_chats import ChatsClient, RateLimit, RateLimitError
from yamarket_chats.limits import WaitTooLong, _engine
from yamarket_chats.redis_limits import QuotaBackendError, RedisLimiter, _version_problem
from yamarket_chats.testing import FakeMarketConfig, run_fake_server


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest_asyncio.fixture
async def probe(redis_cluster: RedisCluster) -> AsyncIterator[redis.RedisCluster]:
    """A cluster client of the test's own, to look at what the limiter left."""
    client = redis.RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


async def node_of(client: redis.RedisCluster, business: int) -> str:
    """The node holding a business's keys."""
    node = client.get_node_from_key(f"x:{{{business}}}:slots")
    assert node is not None
    return str(node.name)


async def businesses_on_every_node(client: redis.RedisCluster) -> list[int]:
    """One business id per node of the cluster, the first found from BUSINESS on."""
    found: dict[str, int] = {}
    business = BUSINESS
    while len(found) < len(client.get_primaries()):
        found.setdefault(await node_of(client, business), business)
        business += 1
    return sorted(found.values())


async def test_two_processes_share_one_quota_through_the_cluster_without_420(
    redis_cluster: RedisCluster,
) -> None:
    async with run_fake_server(scaled(get_chat=40)) as fake:
        windows = 3
        results, end = await run_workers(fake, redis_cluster.url, 2, windows, options=["--cluster"])
        statuses = [e.status for e in fake.journal]
        mono_end = time.monotonic() - (time.time() - end)  # the journal's clock
        served = sum(1 for e in fake.journal if e.status == 200 and e.started < mono_end)
        print(f"2 workers on a cluster: {served}/{windows * 40} of the quota, {results=}")
        assert statuses.count(420) == 0, (statuses.count(420), results)
        assert all(done > 0 and rate_limited == 0 for done, rate_limited in results)
        assert served >= 0.9 * windows * 40, served


async def test_a_url_with_cluster_and_a_cluster_client_share_slots_and_wake_ups(
    redis_cluster: RedisCluster, probe: redis.RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a pub/sub wake-up the waiter would look again after 5 s.
    monkeypatch.setattr(_engine, "_BACKSTOP", (5.0, 5.0))
    own = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        async with (
            RedisLimiter(redis_cluster.url, cluster=True, prefix="both", limits=NO_BUCKET) as one,
            RedisLimiter(client=own, prefix="both", limits=NO_BUCKET) as other,
        ):
            held = [await one.acquire(BUSINESS, "get_chat") for _ in range(4)]
            with pytest.raises(WaitTooLong):  # one cap for both
                await other.acquire(BUSINESS, "get_chat", deadline=time.monotonic() + 0.2)
            waiter = asyncio.create_task(other.acquire(BUSINESS, "get_chat"))
            channel = f"both:{{{BUSINESS}}}:slots"
            deadline = time.monotonic() + 10
            while not await subscribed(probe, channel):  # the waiter listens for a free slot
                assert time.monotonic() < deadline and not waiter.done()
                await asyncio.sleep(0.01)
            freed_at = time.monotonic()
            await one.finish(held[0], 200, answer_headers(900, time.time() + 600))
            lease = await asyncio.wait_for(waiter, 3.0)
            assert time.monotonic() - freed_at < 1.0  # woken through the cluster's pub/sub
            for rest in [*held[1:], lease]:
                await (one if rest in held else other).finish(rest, 200, None)
        assert await probe.exists(channel) == 0  # every slot given back
        assert await probe.exists(f"both:{{{BUSINESS}}}:get_chat:server") == 1
    finally:
        await own.aclose()  # a client given is the caller's to close
    assert "secret" not in repr(RedisLimiter("redis://:secret@127.0.0.1:1/0", cluster=True))


async def subscribed(client: redis.RedisCluster, channel: str) -> bool:
    """Whether any node has a subscriber on `channel`."""
    for node in client.get_primaries():
        numsub = await client.pubsub_numsub(channel, target_nodes=node)
        if any(count for _, count in numsub):
            return True
    return False


async def test_businesses_on_every_node_in_one_run(
    redis_cluster: RedisCluster, probe: redis.RedisCluster
) -> None:
    businesses = await businesses_on_every_node(probe)
    config = FakeMarketConfig(
        businesses=tuple(businesses), chats_per_business=1, quota_window=3600.0,
        quotas={"get_chat": 10},
    )  # fmt: skip
    async with run_fake_server(config) as fake:
        chats = {b: fake.market.chats(b)[0].chat_id for b in businesses}
        limits = {"get_chat": RateLimit(1000, 3600)}
        async with (
            RedisLimiter(redis_cluster.url, cluster=True, prefix="nodes", limits=limits) as lim,
            # max_wait: room for the slots under load; a spent hour is refused at once anyway
            ChatsClient(api_key=fake.api_key, base_url=fake.url, limiter=lim, max_wait=20) as c,
        ):
            # Finishes of every business queued at once: a take carries only
            # its own business's, the rest go in a call per business.
            calls = [c.get_chat(b, chats[b]) for b in businesses for _ in range(12)]
            results = await asyncio.gather(*calls, return_exceptions=True)
        statuses = [e.status for e in fake.journal]
        assert statuses.count(420) == 0, statuses
        unexpected = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(r, RateLimitError) for r in unexpected), unexpected
        for business in businesses:  # the server's 10 each at most, and the limiter said so
            served = fake.journal.entries("get_chat", status=200, business_id=business)
            assert 1 <= len(served) <= 10, (business, len(served))
        nodes = {await node_of(probe, b) for b in businesses}
        assert len(nodes) == len(businesses)  # the keys did land on every node
        for business in businesses:
            remaining = await probe.hget(f"nodes:{{{business}}}:get_chat:server", "remaining")
            assert remaining is not None and int(remaining) <= 0


async def test_one_round_trip_per_request_in_the_cluster(
    redis_cluster: RedisCluster, probe: redis.RedisCluster
) -> None:
    async def script_calls() -> int:
        stats = await probe.info("commandstats", target_nodes=redis.RedisCluster.PRIMARIES)
        return sum(int(node.get("cmdstat_evalsha", {}).get("calls", 0)) for node in stats.values())

    before = await script_calls()
    until = time.time() + 600
    # (a client given, as before the fix: then every take's keys crossed slots)
    async with RedisLimiter(client=probe, prefix="rt", limits=NO_BUCKET) as limiter:
        for _ in range(50):
            lease = await limiter.acquire(BUSINESS, "get_chat")
            assert await limiter.finish(lease, 200, answer_headers(900, until)) == 0
    assert await script_calls() - before <= 50 + 2
    remaining = await probe.hget(f"rt:{{{BUSINESS}}}:get_chat:server", "remaining")
    assert int(remaining or 0) == 900 - 49


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ("7.0.15", False),
        ("5.0.0", False),
        ("6.2.14", False),
        ("10.0.1", False),
        ("4.0.14", True),
        ("3.2.12", True),
        (None, False),  # INFO not permitted: not checked
        ("unknown", False),  # a Redis-compatible server's own words: not checked
    ],
)
def test_the_redis_version_check(version: str | None, refused: bool) -> None:
    problem = _version_problem(version)
    assert (problem is not None) == refused
    if problem is not None:
        assert f"Redis {version} is too old" in problem and "5.0 or later" in problem


async def test_a_real_redis_and_a_real_cluster_pass_the_version_check(
    redis_cluster: RedisCluster,
) -> None:
    server = RedisServer()
    server.start()
    try:
        for limiter in (
            RedisLimiter(server.url),
            RedisLimiter(redis_cluster.url, cluster=True),
        ):
            async with limiter:  # start() reads INFO and checks the version
                pass
        with pytest.raises(QuotaBackendError, match="unreachable"):  # not a cluster node
            async with RedisLimiter(server.url, cluster=True):
                pass
    finally:
        server.stop()


async def test_the_cli_syncs_through_the_cluster_and_reports_it_ready(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    """``sync --redis-url NODE --redis-cluster``: /readyz asks the cluster; every message lands."""
    import json
    import os
    import sqlite3
    import sys

    import aiohttp

    config = FakeMarketConfig(
        businesses=(BUSINESS, 2002), chats_per_business=2, messages_per_chat=30
    )
    async with run_fake_server(config) as fake:
        base = {k: v for k, v in os.environ.items() if not k.startswith("YANDEX_MARKET_")}
        db = tmp_path / "c.db"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "yamarket_chats",
            "sync",
            str(BUSINESS),
            "2002",
            "--db",
            str(db),
            "--base-url",
            fake.url,
            "--redis-url",
            redis_cluster.url,
            "--redis-cluster",
            "--follow",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            env={**base, "YANDEX_MARKET_API_KEY": fake.api_key},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None and proc.stdout is not None
            first = json.loads(await asyncio.wait_for(proc.stderr.readline(), 30))
            for _ in range(2):  # each business synced once
                json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            async with aiohttp.ClientSession() as http, http.get(f"{first['url']}/readyz") as r:
                assert r.status == 200 and (await r.json())["checks"]["redis"] == "ok"
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 143, err.decode()
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 2 * 2 * 30
        assert [e.status for e in fake.journal].count(420) == 0
