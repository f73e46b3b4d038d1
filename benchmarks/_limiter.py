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


async def _redis_overhead(url: str, businesses: int) -> dict[str, Any]:
    """acquire + finish through Redis (two Lua round trips) against local buckets."""
    from yamarket_chats.redis_limits import RedisLimiter

    ids = range(1, businesses + 1)
    calls = businesses * len(OVERHEAD_METHODS)
    headers = _answer_headers()
    local = Limits(DEFAULT_LIMITS, 4)
    async with RedisLimiter(url) as shared:
        await _cycle(shared, range(1, 11), OVERHEAD_METHODS, headers)  # load the scripts
        redis_s = await _cycle(shared, ids, OVERHEAD_METHODS, headers)
    local_s = await _cycle(local, ids, OVERHEAD_METHODS, headers)
    return {
        "businesses": businesses,
        "calls": calls,
        "local_us": local_s * 1e6 / calls,
        "redis_us": redis_s * 1e6 / calls,
    }


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
