"""Quotas shared through a real redis-server by several worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio
import redis.asyncio as redis

from tests.conftest import BUSINESS, FAST
from tests.servers import RedisServer, free_port
from tests.virtual_clock import ManualClock
from tests.waiting import until
from yamarket_chats import ChatsClient, InvalidRequestError, RateLimit, RateLimitError
from yamarket_chats.limits import WaitTooLong, _engine
from yamarket_chats.redis_limits import QuotaBackendError, RedisLimiter
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
WINDOW = 2.0


def scaled(get_chat: int, max_parallel: int | None = None) -> FakeMarketConfig:
    """One business, one chat, a `get_chat` quota per 2 s window instead of per hour."""
    return FakeMarketConfig(
        businesses=(BUSINESS,),
        chats_per_business=1,
        messages_per_chat=5,
        quota_window=WINDOW,
        quotas={"get_chat": get_chat},
        max_parallel=max_parallel,
    )


@pytest_asyncio.fixture
async def quota_fake() -> AsyncIterator[FakeServer]:
    async with run_fake_server(scaled(get_chat=40)) as fake:
        yield fake


async def test_keys_are_prefixed_and_expire(
    redis_server: RedisServer, quota_fake: FakeServer
) -> None:
    chat_id = quota_fake.market.chats(BUSINESS)[0].chat_id
    limits = {"get_chat": RateLimit(40, WINDOW)}
    async with (
        RedisLimiter(redis_server.url, limits=limits, prefix="t1", lease_seconds=1.0) as limiter,
        ChatsClient(api_key=quota_fake.api_key, base_url=quota_fake.url, limiter=limiter) as c,
    ):
        await c.get_chat(BUSINESS, chat_id)
    probe = redis.Redis.from_url(redis_server.url)
    try:
        keys = sorted(k.decode() for k in await probe.keys("*"))
        assert keys == [f"t1:{{{BUSINESS}}}:get_chat:bucket", f"t1:{{{BUSINESS}}}:get_chat:server"]
        ttls = [await probe.pttl(k) for k in keys]
        assert all(0 < ttl <= (WINDOW + 6) * 1000 for ttl in ttls), ttls
        assert int(await probe.hget(keys[1], "remaining") or 0) == 39
    finally:
        await probe.aclose()
    assert "secret" not in repr(RedisLimiter("redis://:secret@127.0.0.1:1/0"))


async def run_workers(
    fake: FakeServer,
    redis_url: str,
    workers: int,
    windows: int,
    skews: tuple[float, ...] = (),
    options: Sequence[str] = (),
    during: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[tuple[int, int]], float]:
    """Run `workers` processes of tests/redis_worker.py for `windows` windows.

    Once every worker says it is ready, they start together on the fake's next
    window boundary. Returns their (reads, 420s) and the wall-clock end.
    ``skews[i]`` shifts worker i's clock by that many seconds (default 0);
    `options` go to every worker's command line; `during` runs once they started.
    """
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    args = [fake.url, fake.api_key, redis_url, str(BUSINESS), str(chat_id), "40", str(WINDOW)]
    procs = []
    for i in range(workers):
        skew = skews[i] if i < len(skews) else 0.0
        env = {**os.environ, "YAMARKET_TEST_CLOCK_SKEW": str(skew)}
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.redis_worker",
                *args,
                *options,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
    start = math.ceil((time.time() + 0.2) / WINDOW) * WINDOW  # a window boundary
    end = start + windows * WINDOW
    for proc in procs:  # every worker learns the start before any waits for its end
        assert proc.stdin is not None
        proc.stdin.write(f"{start} {end}\n".encode())
        await proc.stdin.drain()
    if during is not None:
        await during()
    results = []
    for proc in procs:
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        done, rate_limited = out.decode().split()[-2:]
        results.append((int(done), int(rate_limited)))
    return results, end


async def share_one_quota(fake: FakeServer, redis_url: str, skews: tuple[float, ...] = ()) -> None:
    """Four workers over three windows: no 420, at least 90% of the quota used."""
    windows = 3
    results, end = await run_workers(fake, redis_url, 4, windows, skews)
    statuses = [e.status for e in fake.journal]
    allowed = windows * 40
    mono_end = time.monotonic() - (time.time() - end)  # the journal's clock
    served = sum(1 for e in fake.journal if e.status == 200 and e.started < mono_end)
    print(f"4 workers, {skews=}: {served}/{allowed} of the quota used, {results=}")
    assert statuses.count(420) == 0, (statuses.count(420), results)
    assert sum(rate_limited for _, rate_limited in results) == 0
    assert all(done > 0 for done, _ in results)  # every worker got its share
    assert served >= 0.9 * allowed, (served, allowed)


async def test_four_workers_share_one_quota_without_420(
    redis_server: RedisServer, quota_fake: FakeServer
) -> None:
    await share_one_quota(quota_fake, redis_server.url)


@pytest.mark.parametrize(
    "skews",
    [(-30.0,) * 4, (30.0,) * 4, (-30.0, 30.0, 0.0, 0.0)],
    ids=["behind", "ahead", "mixed"],
)
async def test_workers_on_skewed_clocks_share_one_quota_without_420(
    redis_server: RedisServer, quota_fake: FakeServer, skews: tuple[float, ...]
) -> None:
    # Every time that enters Redis must be on Redis's clock: -Until arrives as
    # seconds on the server's clock and becomes a moment of Redis's TIME.
    await share_one_quota(quota_fake, redis_server.url, skews)


async def test_a_killed_worker_frees_its_slots_within_the_lease(
    redis_server: RedisServer, quota_fake: FakeServer
) -> None:
    chat_id = quota_fake.market.chats(BUSINESS)[0].chat_id
    quota_fake.faults.add("latency", delay=4.0, times=4)
    args = [quota_fake.url, quota_fake.api_key, redis_server.url, str(BUSINESS), str(chat_id)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.redis_worker", *args, "40", str(WINDOW), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
    proc.stdin.write(f"{time.time()} {time.time() + 60}\n".encode())  # start now
    # the worker holds all 4 slots (bounded: a worker that failed to start must not hang us)
    await asyncio.wait_for(quota_fake.wait_in_flight(BUSINESS, 4), 30.0)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    killed_at = time.monotonic()
    limits = {"get_chat": RateLimit(40, WINDOW)}
    async with (
        RedisLimiter(redis_server.url, limits=limits, lease_seconds=1.0) as limiter,
        ChatsClient(api_key=quota_fake.api_key, base_url=quota_fake.url, limiter=limiter) as c,
    ):
        await asyncio.wait_for(c.get_chat(BUSINESS, chat_id), 5.0)
    assert time.monotonic() - killed_at <= 1.0 + 0.5  # the lease: the waiter wakes as it ends


async def served(fake: FakeServer, count: int) -> None:
    """Wait until the fake has answered `count` requests with a 200."""
    await until(
        lambda: sum(1 for e in fake.journal if e.status == 200) >= count,
        "the workers never got going",
    )


@pytest.mark.parametrize("outage", ["restart", "death"])
async def test_the_local_fallback_stays_within_the_servers_count_across_an_outage(
    redis_server: RedisServer, quota_fake: FakeServer, outage: str
) -> None:
    # Two workers, each falling back to half of every quota, read as fast as
    # the quota lets them (it binds: the buckets hold more than the server's
    # window). Early in the second window Redis restarts empty, or dies for
    # good. Before the fix a death cost 3 or 4 420s in every run (each
    # fallback started with a full bucket and no server count, then took
    # every count the server reported as its own), and a restart sometimes.
    async def outage_mid_run() -> None:
        await served(quota_fake, 50)
        stop = redis_server.restart if outage == "restart" else redis_server.kill
        await asyncio.to_thread(stop)

    windows = 3
    results, _ = await run_workers(
        quota_fake,
        redis_server.url,
        2,
        windows,
        options=["--local-fraction", "0.5"],
        during=outage_mid_run,
    )
    statuses = [e.status for e in quota_fake.journal]
    print(f"{outage}: {statuses.count(200)} reads, {statuses.count(420)} x 420, {results=}")
    assert statuses.count(420) == 0, (statuses.count(420), results)
    assert all(done > 0 for done, _ in results)


ONE_WINDOW = 1e9  # seconds: the fake's current window outlasts any test (on the true clock)


@contextlib.asynccontextmanager
async def half_a_fleet(url: str, fake: FakeServer) -> AsyncIterator[ChatsClient]:
    """One of two workers: a client on a limiter that falls back to half of every quota.

    No bucket: the server's count is the only quota. A call that would wait
    for the server's window fails at once (`RateLimitError`), sending nothing.
    """
    limiter = RedisLimiter(url, limits=NO_BUCKET, on_error="local", local_fraction=0.5)
    async with (
        limiter,
        ChatsClient(
            api_key=fake.api_key, base_url=fake.url, limiter=limiter, max_wait=10.0, **FAST
        ) as client,
    ):
        yield client


async def reads(client: ChatsClient, chat_id: int, count: int) -> list[object]:
    """`count` reads at once; each one's result or exception."""
    calls = (client.get_chat(BUSINESS, chat_id) for _ in range(count))
    return await asyncio.gather(*calls, return_exceptions=True)


def refused(results: list[object]) -> int:
    """Reads that failed as the quota was spent, without waiting for it."""
    assert all(isinstance(r, RateLimitError) for r in results if isinstance(r, Exception)), results
    return sum(1 for r in results if isinstance(r, RateLimitError))


@pytest.mark.parametrize("outage", ["restart", "death"])
async def test_a_window_known_spent_stays_spent_across_an_outage(
    redis_server: RedisServer, outage: str
) -> None:
    # Before the fix, a Redis restarted empty forgot the spent window, and
    # each fallback started with none: both workers sent, two 420s.
    config = scaled(get_chat=8)
    async with run_fake_server(dataclasses.replace(config, quota_window=ONE_WINDOW)) as fake:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        async with (
            half_a_fleet(redis_server.url, fake) as one,
            half_a_fleet(redis_server.url, fake) as other,
        ):
            for client in (one, other):  # one at a time: the server's count is exact
                for _ in range(4):
                    await client.get_chat(BUSINESS, chat_id)
            # both learn from Redis that the window is spent; nothing goes out
            assert refused(await reads(one, chat_id, 1) + await reads(other, chat_id, 1)) == 2
            stop = redis_server.restart if outage == "restart" else redis_server.kill
            await asyncio.to_thread(stop)
            assert refused(await reads(one, chat_id, 1) + await reads(other, chat_id, 1)) == 2
        assert [(e.operation, e.status) for e in fake.journal] == [("get_chat", 200)] * 8


async def test_each_fallback_takes_its_share_of_what_the_server_has_left(
    redis_server: RedisServer,
) -> None:
    # 12 of 20 spent through Redis, the worker that spent first knowing only
    # that 14 were left when it last looked; then Redis dies. Each fallback
    # starts from half of what it knew and takes half of every count the
    # server reports: together they stay within the 8 left (before the fix,
    # both took the server's whole count as their own: 420s).
    config = scaled(get_chat=20)
    async with run_fake_server(dataclasses.replace(config, quota_window=ONE_WINDOW)) as fake:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        async with (
            half_a_fleet(redis_server.url, fake) as first,
            half_a_fleet(redis_server.url, fake) as second,
        ):
            for client in (first, second):  # one at a time: the server's count is exact
                for _ in range(6):
                    await client.get_chat(BUSINESS, chat_id)
            await asyncio.to_thread(redis_server.kill)
            got = await asyncio.gather(reads(first, chat_id, 10), reads(second, chat_id, 10))
        statuses = [e.status for e in fake.journal]
        shares = [10 - refused(results) for results in got]
        print(f"after Redis died: {shares} reads, {statuses.count(420)} x 420")
        assert statuses.count(420) == 0, statuses
        assert all(1 <= share <= 4 for share in shares), shares  # half of 8 at most


async def test_redis_down_at_start_is_a_clear_error(quota_fake: FakeServer) -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    client = ChatsClient(api_key=quota_fake.api_key, base_url=quota_fake.url, limiter=limiter)
    with pytest.raises(QuotaBackendError, match="unreachable"):
        async with client:
            pass
    await limiter.close()
    assert len(quota_fake.journal) == 0


async def test_redis_stopping_mid_run_fails_calls_by_default(
    redis_server: RedisServer, quota_fake: FakeServer
) -> None:
    chat_id = quota_fake.market.chats(BUSINESS)[0].chat_id
    async with (
        RedisLimiter(redis_server.url) as limiter,
        ChatsClient(api_key=quota_fake.api_key, base_url=quota_fake.url, limiter=limiter) as c,
    ):
        await c.get_chat(BUSINESS, chat_id)
        redis_server.stop()
        with pytest.raises(QuotaBackendError, match="no request was sent"):
            await c.get_chat(BUSINESS, chat_id)
    assert len(quota_fake.journal) == 1


async def test_redis_stopping_mid_run_can_fall_back_to_local_buckets(
    redis_server: RedisServer, quota_fake: FakeServer
) -> None:
    chat_id = quota_fake.market.chats(BUSINESS)[0].chat_id
    limits = {"get_chat": RateLimit(40, WINDOW)}
    limiter = RedisLimiter(redis_server.url, limits=limits, on_error="local", local_fraction=0.25)
    async with (
        limiter,
        ChatsClient(
            api_key=quota_fake.api_key, base_url=quota_fake.url, limiter=limiter, **FAST
        ) as c,
    ):
        await c.get_chat(BUSINESS, chat_id)
        redis_server.stop()
        started = time.monotonic()
        await asyncio.gather(*(c.get_chat(BUSINESS, chat_id) for _ in range(15)))
        elapsed = time.monotonic() - started
    assert [e.status for e in quota_fake.journal] == [200] * 16
    # a quarter of 40 per 2 s is 5 per second: 15 requests cannot take under ~1 s
    assert elapsed >= 1.0


async def test_5xx_answers_are_refunded_in_redis(
    redis_server: RedisServer, quota_fake: FakeServer
) -> None:
    chat_id = quota_fake.market.chats(BUSINESS)[0].chat_id
    limits = {"get_chat": RateLimit(6, WINDOW)}
    async with (
        RedisLimiter(redis_server.url, limits=limits) as limiter,
        ChatsClient(
            api_key=quota_fake.api_key, base_url=quota_fake.url, limiter=limiter, backoff=0.001
        ) as client,
    ):
        quota_fake.clock = ManualClock()  # one window for the whole test
        quota_fake.faults.add("status_500", times=5)
        for _ in range(6):
            await client.get_chat(BUSINESS, chat_id)
        assert client.stats.waited_seconds < 0.5
    assert [e.status for e in quota_fake.journal] == [500] * 5 + [200] * 6


async def test_cli_sync_shares_quotas_through_redis(
    redis_server: RedisServer, quota_fake: FakeServer, tmp_path: Path
) -> None:
    cmd = [sys.executable, "-m", "yamarket_chats.cli", "sync", str(BUSINESS), "--quiet"]
    cmd += ["--base-url", quota_fake.url, "--db", str(tmp_path / "chats.sqlite3")]
    env = {**os.environ, "YANDEX_MARKET_API_KEY": quota_fake.api_key}
    ok = await asyncio.create_subprocess_exec(
        *cmd, "--redis-url", redis_server.url, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await ok.communicate()
    assert ok.returncode == 0, err
    probe = redis.Redis.from_url(redis_server.url)
    try:
        keys = {k.decode() for k in await probe.keys("yamarket_chats:*")}
    finally:
        await probe.aclose()
    assert f"yamarket_chats:{{{BUSINESS}}}:get_chat_history:server" in keys
    down = await asyncio.create_subprocess_exec(
        *cmd,
        "--redis-url",
        f"redis://127.0.0.1:{free_port()}/0",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await down.communicate()
    assert down.returncode == 1
    assert b"unreachable" in err and b"Traceback" not in err and len(err.splitlines()) == 1


async def test_other_methods_in_flight_do_not_eat_this_methods_quota(
    redis_server: RedisServer,
) -> None:
    async with run_fake_server(scaled(get_chat=2, max_parallel=4)) as fake:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        limits = {"get_chat": RateLimit(1000, WINDOW)}
        async with (
            RedisLimiter(redis_server.url, limits=limits) as limiter,
            ChatsClient(api_key=fake.api_key, base_url=fake.url, limiter=limiter) as client,
        ):
            fake.clock = ManualClock()  # one window for the whole test
            fake.faults.add("latency", delay=1.5, times=3, operations={"get_chat_history"})
            reads = [
                asyncio.create_task(client.get_chat_history(BUSINESS, chat_id)) for _ in range(3)
            ]
            await fake.wait_in_flight(BUSINESS, 3)
            await client.get_chat(BUSINESS, chat_id)  # the server says: 1 get_chat left
            # three get_chat_history in flight are not get_chat requests: no wait
            await asyncio.wait_for(client.get_chat(BUSINESS, chat_id), 0.5)
            await asyncio.gather(*reads)
        assert [e.status for e in fake.journal.entries("get_chat")] == [200, 200]


NO_BUCKET: dict[str, RateLimit | None] = {"get_chat": None, "get_chats": None}


def answer_headers(remaining: int, until: float) -> dict[str, str]:
    """The rate-limit headers of an answer, as the API sends them (`until`: epoch)."""
    now = time.time()
    return {
        "X-RateLimit-Resource-Remaining": str(remaining),
        "X-RateLimit-Resource-Until": formatdate(until, usegmt=True),
        "Date": formatdate(now, usegmt=True),
    }


async def redis_stat(url: str, section: str, field: str, sub: str | None = None) -> int:
    probe = redis.Redis.from_url(url)
    try:
        info = await probe.info(section)
    finally:
        await probe.aclose()
    value = info.get(field, {} if sub else 0)
    return int(value.get(sub, 0) if sub else value)


async def within(call: Awaitable[T], seconds: float = 5.0) -> T:
    """`call`, bounded: a limiter that ignored a deadline fails the test, not hangs it."""
    return await asyncio.wait_for(call, seconds)


async def redis_answered(url: str, calls: int) -> None:
    """Wait until Redis has run the limiter's script `calls` times in all."""

    async def asked() -> bool:
        return await script_calls(url) >= calls

    await until(asked, "the limiter never asked Redis", timeout=10)


async def subscribers(url: str) -> int:
    """Channels with a subscriber (the limiters' wake-ups)."""
    probe = redis.Redis.from_url(url)
    try:
        return len(await probe.pubsub_channels())
    finally:
        await probe.aclose()


async def script_calls(url: str) -> int:
    return await redis_stat(url, "commandstats", "cmdstat_evalsha", "calls")


async def test_waiters_on_a_full_cap_do_not_poll_redis(redis_server: RedisServer) -> None:
    async with RedisLimiter(redis_server.url, prefix="poll", limits=NO_BUCKET) as limiter:
        held = [await limiter.acquire(BUSINESS, "get_chat") for _ in range(4)]
        waiters = {asyncio.create_task(limiter.acquire(BUSINESS, "get_chat")) for _ in range(100)}
        await asyncio.sleep(0.2)
        before = await redis_stat(redis_server.url, "stats", "total_commands_processed")
        await asyncio.sleep(1.5)
        during = await redis_stat(redis_server.url, "stats", "total_commands_processed") - before
        # polling every 20 ms made ~28,000 commands a second here
        print(f"100 waiters, 1.5 s: {during} Redis commands")
        assert during <= 150, during
        for lease in held:
            await limiter.finish(lease, 200, None)
        while waiters:  # each release hands its slot on, without a poll
            done, waiters = await asyncio.wait(
                waiters, timeout=5, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, "a freed slot was not handed on"
            for task in done:
                await limiter.finish(task.result(), 200, None)
        assert not limiter._slot_gates and not limiter._method_gates


async def test_a_slot_freed_by_another_worker_wakes_the_waiter(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the pub/sub wake-up the waiter would look again after 5 s.
    monkeypatch.setattr(_engine, "_BACKSTOP", (5.0, 5.0))
    async with (
        RedisLimiter(redis_server.url, prefix="wake", limits=NO_BUCKET) as one,
        RedisLimiter(redis_server.url, prefix="wake", limits=NO_BUCKET) as other,
    ):
        held = [await one.acquire(BUSINESS, "get_chat") for _ in range(4)]
        asked = await script_calls(redis_server.url)
        waiter = asyncio.create_task(other.acquire(BUSINESS, "get_chat"))
        # The waiting state: subscribed to the slots' channel, and Redis said "full".
        deadline = time.monotonic() + 10
        while await script_calls(redis_server.url) <= asked or not await subscribers(
            redis_server.url
        ):
            assert time.monotonic() < deadline and not waiter.done()
            await asyncio.sleep(0.01)
        assert not waiter.done()
        freed_at = time.monotonic()
        await one.finish(
            held[0], 200, answer_headers(900, time.time() + 600)
        )  # queued, sent within ms
        lease = await asyncio.wait_for(waiter, 3.0)
        woke_after = time.monotonic() - freed_at
        assert woke_after < 1.0, woke_after
        await other.finish(lease, 200, None)
        for rest in held[1:]:
            await one.finish(rest, 200, None)


async def test_one_round_trip_per_request(redis_server: RedisServer) -> None:
    calls_before = await script_calls(redis_server.url)
    until = time.time() + 600  # the server's window ends where it ends, however long we take
    async with RedisLimiter(redis_server.url, prefix="rt", limits=NO_BUCKET) as limiter:
        for _ in range(50):
            lease = await limiter.acquire(BUSINESS, "get_chat")
            assert await limiter.finish(lease, 200, answer_headers(900, until)) == 0
    calls = await script_calls(redis_server.url) - calls_before
    assert calls <= 50 + 2, calls  # acquire and finish apart made 100
    probe = redis.Redis.from_url(redis_server.url)
    try:  # every finish was applied: no lease left, the server's count merged
        keys = sorted(k.decode() for k in await probe.keys("rt:*"))
        assert keys == [f"rt:{{{BUSINESS}}}:get_chat:server"]
        # 900 from the first answer, less the 49 requests that went out after it
        assert int(await probe.hget(keys[0], "remaining") or 0) == 900 - 49
    finally:
        await probe.aclose()


async def test_a_spent_quota_is_shared_at_once_and_finish_reports_it(
    redis_server: RedisServer,
) -> None:
    async with (
        RedisLimiter(redis_server.url, prefix="spent") as one,
        RedisLimiter(redis_server.url, prefix="spent") as other,
    ):
        until = time.time() + 10  # the end of the server's window
        lease = await one.acquire(BUSINESS, "get_chat")
        assert await one.finish(lease, 200, answer_headers(900, until)) == 0
        lease = await one.acquire(BUSINESS, "get_chat")
        reset_in = await one.finish(lease, 420, answer_headers(0, until))
        assert 8.0 < reset_in <= 10.5, reset_in  # a 420 of the spent kind
        # the other worker knows it already, without waiting for a flush
        with pytest.raises(WaitTooLong) as caught:
            await within(other.acquire(BUSINESS, "get_chat", deadline=time.monotonic() + 2))
        assert caught.value.retry_in is not None and 8.0 < caught.value.retry_in <= 10.5


async def test_deadline_raises_at_once_for_the_bucket_and_the_window(
    redis_server: RedisServer,
) -> None:
    limits = {"get_chat": RateLimit(1, 3600), "get_chats": RateLimit(100, 3600)}
    async with RedisLimiter(redis_server.url, prefix="dl", limits=limits) as limiter:
        lease = await limiter.acquire(BUSINESS, "get_chat")
        await limiter.finish(lease, 200, None)
        started = time.monotonic()
        with pytest.raises(WaitTooLong) as caught:  # the bucket: one an hour
            await within(limiter.acquire(BUSINESS, "get_chat", deadline=started + 2))
        assert caught.value.retry_in is not None and caught.value.retry_in > 3000
        # a coroutine waiting for that bucket without a deadline: the next
        # one with a deadline learns the wait from it, not from Redis
        asked = await script_calls(redis_server.url)
        sleeper = asyncio.create_task(limiter.acquire(BUSINESS, "get_chat"))
        await redis_answered(redis_server.url, asked + 1)  # it learned its wait, and sleeps
        with pytest.raises(WaitTooLong) as caught:
            await within(limiter.acquire(BUSINESS, "get_chat", deadline=time.monotonic() + 2))
        assert caught.value.retry_in is not None and caught.value.retry_in > 3000
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        # the server's window: spent for another ten minutes
        lease = await limiter.acquire(BUSINESS, "get_chats")
        await limiter.finish(lease, 200, answer_headers(0, time.time() + 600))
        with pytest.raises(WaitTooLong) as caught:
            await within(limiter.acquire(BUSINESS, "get_chats", deadline=time.monotonic() + 2))
        assert caught.value.retry_in is not None and 590 < caught.value.retry_in <= 600
        assert time.monotonic() - started < 1.0
        assert limiter.waited < 1.0


async def test_deadline_ends_a_wait_for_a_slot(redis_server: RedisServer) -> None:
    async with RedisLimiter(redis_server.url, prefix="dls", limits=NO_BUCKET) as limiter:
        held = [await limiter.acquire(BUSINESS, "get_chat") for _ in range(4)]
        started = time.monotonic()
        with pytest.raises(WaitTooLong) as caught:
            await within(limiter.acquire(BUSINESS, "get_chat", deadline=started + 0.3))
        elapsed = time.monotonic() - started
        assert caught.value.retry_in is None
        assert 0.25 <= elapsed < 1.5, elapsed
        # queued behind another waiter of this process: the same
        asked = await script_calls(redis_server.url)
        behind = asyncio.create_task(limiter.acquire(BUSINESS, "get_chat"))
        await redis_answered(redis_server.url, asked + 1)  # told "full", it waits
        with pytest.raises(WaitTooLong):
            await within(limiter.acquire(BUSINESS, "get_chats", deadline=time.monotonic() + 0.3))
        await limiter.finish(held[0], 200, None)
        await limiter.finish(await asyncio.wait_for(behind, 2.0), 200, None)
        for lease in held[1:]:
            await limiter.finish(lease, 200, None)


async def test_cancelled_acquires_leave_no_slot_behind(redis_server: RedisServer) -> None:
    async with RedisLimiter(redis_server.url, prefix="cx", limits=NO_BUCKET) as limiter:
        # cancelled at every point: queued, mid-script, waiting for a slot
        for i in range(40):
            task = asyncio.create_task(limiter.acquire(BUSINESS, "get_chat"))
            for _ in range(i % 4):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await limiter.finish(await task, 200, None)  # it went out first
        held = [await limiter.acquire(BUSINESS, "get_chat") for _ in range(4)]
        waiters = [asyncio.create_task(limiter.acquire(BUSINESS, "get_chat")) for _ in range(10)]
        await asyncio.sleep(0.1)  # wherever each is by then: cancelled at any point
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        for lease in held:
            await limiter.finish(lease, 200, None)
        assert not limiter._slot_gates and not limiter._method_gates
        # all four slots are free again, at once
        again = [
            await within(limiter.acquire(BUSINESS, "get_chat", deadline=time.monotonic() + 0.5))
            for _ in range(4)
        ]
        for lease in again:
            await limiter.finish(lease, 200, None)
    probe = redis.Redis.from_url(redis_server.url)
    try:
        assert await probe.exists(f"cx:{{{BUSINESS}}}:slots") == 0
    finally:
        await probe.aclose()


@pytest.mark.parametrize(
    ("option", "field"),
    [
        ({"limits": {"get_chta": RateLimit(5)}}, "limits"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"lease_seconds": float("nan")}, "lease_seconds"),
        ({"local_fraction": 2}, "local_fraction"),
        ({"on_error": "ignore"}, "on_error"),
        ({"prefix": "app{1}"}, "prefix"),  # the business id is the hash tag
        ({"prefix": "app}"}, "prefix"),
    ],
)
def test_bad_options_are_refused_like_the_clients(option: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        RedisLimiter("redis://127.0.0.1:1/0", **option)  # type: ignore[arg-type]


async def test_cluster_needs_a_cluster_client() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(InvalidRequestError, match="cluster=True needs a RedisCluster"):
            RedisLimiter(client=client, cluster=True)
    finally:
        await client.aclose()
