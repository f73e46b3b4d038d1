"""The limiter run: per-call overhead of the limit machinery, and quota use."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import tracemalloc
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

from yamarket_chats import ChatsClient, RateLimit
from yamarket_chats.limits import DEFAULT_LIMITS, METHODS, Limiter, Limits

OVERHEAD_METHODS = ("get_chats", "get_chat_history", "get_chat")


def _answer_headers() -> dict[str, str]:
    """Rate-limit headers as the API sends them with every answer."""
    now = time.time()
    return {
        "X-RateLimit-Resource-Limit": "10000",
        "X-RateLimit-Resource-Remaining": "9000",
        "X-RateLimit-Resource-Until": formatdate(now // 3600 * 3600 + 3600, usegmt=True),
        "Date": formatdate(now, usegmt=True),
    }


async def _cycle(
    limits: Limiter, ids: range, methods: tuple[str, ...], headers: Mapping[str, str] | None
) -> float:
    """Time acquire + finish for every (business, method), as the client does per request."""
    started = time.perf_counter()
    for method in methods:
        for business_id in ids:
            lease = await limits.acquire(business_id, method)
            await limits.finish(lease, 200, headers)
    return time.perf_counter() - started


async def _baseline(ids: range, methods: tuple[str, ...]) -> float:
    """The same loop around an awaited no-op: what any call costs at all."""

    async def noop(business_id: int, method: str) -> None:
        return None

    started = time.perf_counter()
    for method in methods:
        for business_id in ids:
            await noop(business_id, method)
    return time.perf_counter() - started


async def _overhead(businesses: int) -> dict[str, Any]:
    ids = range(1, businesses + 1)
    calls = businesses * len(OVERHEAD_METHODS)
    per_call = 1e6 / calls
    result: dict[str, Any] = {"businesses": businesses, "calls": calls}
    result["baseline_us"] = await _baseline(ids, OVERHEAD_METHODS) * per_call
    headers = _answer_headers()
    off = Limits(dict.fromkeys(METHODS), None)
    result["off_first_us"] = await _cycle(off, ids, OVERHEAD_METHODS, None) * per_call
    result["off_again_us"] = await _cycle(off, ids, OVERHEAD_METHODS, None) * per_call
    on = Limits(DEFAULT_LIMITS, 4)
    result["on_first_us"] = await _cycle(on, ids, OVERHEAD_METHODS, headers) * per_call
    result["on_again_us"] = await _cycle(on, ids, OVERHEAD_METHODS, headers) * per_call
    # Memory the buckets and slots of every business hold (a separate pass:
    # tracemalloc slows everything down).
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = Limits(DEFAULT_LIMITS, 4)
    await _cycle(held, ids, OVERHEAD_METHODS, headers)
    result["bytes_per_business"] = (tracemalloc.get_traced_memory()[0] - before) / businesses
    tracemalloc.stop()
    return result


async def _quota_use(amount: int, window: float, windows: int) -> dict[str, Any]:
    """Drive get_chat_history as fast as allowed under a scaled quota, in-process fake."""
    from yamarket_chats.testing import FakeMarketConfig, run_fake_server

    config = FakeMarketConfig(
        chats_per_business=4,
        messages_per_chat=10_000,
        quota_window=window,
        quotas={"get_chat_history": amount},
    )
    limits = {"get_chat_history": RateLimit(amount, window)}
    async with (
        run_fake_server(config) as fake,
        ChatsClient(api_key=fake.api_key, base_url=fake.url, limits=limits) as client,
    ):
        business = fake.market.businesses[0]
        chat_ids = [chat.chat_id for chat in fake.market.chats(business)]

        async def drive(chat_id: int) -> None:
            while True:  # walk the chat again and again until cancelled
                async for _page in client.iter_chat_history(business, chat_id).pages():
                    pass

        # Start on a window boundary of the fake (windows are aligned to
        # multiples of `window` of the wall clock) and stop `windows` later.
        start = (time.time() // window + 1) * window
        await asyncio.sleep(start - time.time())
        mono_start = time.monotonic()
        tasks = [asyncio.create_task(drive(chat_id)) for chat_id in chat_ids]
        await asyncio.sleep(start + windows * window - time.time())
        mono_end = time.monotonic()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        entries = fake.journal.entries("get_chat_history")
        inside = [e for e in entries if mono_start <= e.started < mono_end]
        ok = sum(1 for e in inside if e.status == 200)
        refused = sum(1 for e in entries if e.status == 420)
        allowed = amount * windows
        return {
            "amount": amount,
            "window_s": window,
            "windows": windows,
            "allowed": allowed,
            "served": ok,
            "share": ok / allowed,
            "refused_420_journal": refused,
            "rate_limited_client": client.stats.rate_limited,
            "requests_client": client.stats.requests,
            "waited_s": client.stats.waited_seconds,
        }


@contextlib.contextmanager
def _redis_server() -> Any:
    """A throwaway redis-server on a free loopback port, or None if not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


async def _redis_overhead(url: str, businesses: int, rounds: int = 3) -> dict[str, Any]:
    """acquire + finish through Redis, against local buckets, in one run.

    "merged": as the limiter works, a finish rides on the next acquire's
    script (one round trip per request). "apart": every finish is sent on its
    own, the limiter's former design (two round trips). Rounds alternate so
    that both see the same machine load; each round uses fresh business ids.
    """
    import redis.asyncio as redis

    from yamarket_chats.redis_limits import RedisLimiter

    calls = businesses * len(OVERHEAD_METHODS)
    headers = _answer_headers()
    local = Limits(DEFAULT_LIMITS, 4)
    merged_s: list[float] = []
    apart_s: list[float] = []
    merged_trips = 0  # script calls (round trips) of the merged rounds
    probe = redis.Redis.from_url(url)
    try:
        async with (
            RedisLimiter(url, prefix="bench_merged") as merged,
            RedisLimiter(url, prefix="bench_apart") as apart,
        ):
            apart._redis_store.defer = False
            for limiter in (merged, apart):  # load the script, open the connections
                await _cycle(limiter, range(-10, 0), OVERHEAD_METHODS, headers)
            for r in range(rounds):
                ids = range(r * businesses + 1, (r + 1) * businesses + 1)
                apart_s.append(await _cycle(apart, ids, OVERHEAD_METHODS, headers))
                before = await _script_calls(probe)
                merged_s.append(await _cycle(merged, ids, OVERHEAD_METHODS, headers))
                await asyncio.sleep(0.05)  # the last finish goes on its own within 5 ms
                merged_trips += await _script_calls(probe) - before
    finally:
        await probe.aclose()
    local_s = await _cycle(local, range(1, businesses + 1), OVERHEAD_METHODS, headers)
    return {
        "businesses": businesses,
        "calls": calls,
        "rounds": rounds,
        "local_us": local_s * 1e6 / calls,
        "redis_us": min(merged_s) * 1e6 / calls,
        "redis_two_trips_us": min(apart_s) * 1e6 / calls,
        "redis_vs_two_trips": min(merged_s) / min(apart_s),
        "redis_round_trips_per_request": merged_trips / (calls * rounds),
        "waiters": await _redis_waiters(url),
    }


async def _script_calls(probe: Any) -> int:
    """Scripts Redis has run so far (each call of the limiter's script is one round trip)."""
    stats = await probe.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _redis_waiters(url: str, waiters: int = 100, hold: float = 1.0) -> dict[str, Any]:
    """Redis commands per second while `waiters` coroutines wait for a full cap."""
    import redis.asyncio as redis

    from yamarket_chats.redis_limits import RedisLimiter

    no_bucket = {"get_chat": None}
    probe = redis.Redis.from_url(url)
    try:
        async with RedisLimiter(url, prefix="bench_wait", limits=no_bucket) as limiter:
            held = [await limiter.acquire(1, "get_chat") for _ in range(4)]
            tasks = [asyncio.create_task(limiter.acquire(1, "get_chat")) for _ in range(waiters)]
            await asyncio.sleep(0.2)
            before = (await probe.info("stats"))["total_commands_processed"]
            started = time.perf_counter()
            await asyncio.sleep(hold)
            after = (await probe.info("stats"))["total_commands_processed"]
            elapsed = time.perf_counter() - started
            for lease in held:
                await limiter.finish(lease, 200, None)
            for task in asyncio.as_completed(tasks):
                await limiter.finish(await task, 200, None)
    finally:
        await probe.aclose()
    return {"waiters": waiters, "commands_per_s": (after - before - 1) / elapsed}


def run(businesses: int, amount: int, window: float, windows: int) -> dict[str, Any]:
    """The limiter measurements, in this process (Redis only where redis-server exists)."""
    result = {
        "overhead": asyncio.run(_overhead(businesses)),
        "quota": asyncio.run(_quota_use(amount, window, windows)),
    }
    with _redis_server() as url:
        if url is not None:
            result["redis"] = asyncio.run(_redis_overhead(url, min(businesses, 2_000)))
    return result
