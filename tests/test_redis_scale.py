"""The Redis limiter at scale: connections bounded at any number of businesses.

A thousand businesses acquiring at once through one limiter whose pool has
ten connections: every request is served, none fails, the pool is never
asked for more than it has, each business's parallel cap holds, and no
(business, method) has two script calls in flight from this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from tests.servers import RedisServer
from tests.waiting import until
from yamarket_chats import InvalidRequestError, RateLimit
from yamarket_chats.limits import WaitTooLong
from yamarket_chats.redis_limits import RedisLimiter

NO_BUCKET: dict[str, RateLimit | None] = {"get_chat_history": None, "get_chats": None}
CAP = 4


class ScriptCalls:
    """Wraps a limiter's script: counts its calls and the most in flight per take key."""

    def __init__(self, limiter: RedisLimiter) -> None:
        store = limiter._redis_store
        self._script = store._script
        store._script = self  # type: ignore[assignment]
        self.calls = 0
        self.in_flight: Counter[str] = Counter()
        self.most_per_key = 0

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        self.calls += 1
        if args[0] != "a":  # finishes only: no take, no turn
            return await self._script(keys=keys, args=args)
        key = keys[0]  # the take's (business, method) bucket key
        self.in_flight[key] += 1
        self.most_per_key = max(self.most_per_key, self.in_flight[key])
        try:
            return await self._script(keys=keys, args=args)
        finally:
            self.in_flight[key] -= 1


@contextlib.asynccontextmanager
async def most_connections(url: str) -> AsyncIterator[list[int]]:
    """The most clients Redis had at once meanwhile (this probe's own not counted).

    Sampled with ``CLIENT LIST`` as often as Redis answers; the pool's own
    refusal (``Too many connections``) would fail the acquires anyway.
    """
    probe = redis.Redis.from_url(url)
    most = [0]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(await probe.client_list()) - 1)
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        yield most
    finally:
        stop.set()
        await sampler
        await probe.aclose()


async def serve_all(
    limiter: RedisLimiter, businesses: range, tasks: int, requests: int
) -> tuple[int, list[BaseException], Counter[int]]:
    """Every business runs `tasks` coroutines of `requests` acquire-finish each, at once.

    Returns the requests served, the errors, and the most leases each
    business held at once.
    """
    held: Counter[int] = Counter()
    most: Counter[int] = Counter()
    served = 0
    errors: list[BaseException] = []
    methods = ("get_chat_history", "get_chats")

    async def work(business: int, method: str) -> None:
        nonlocal served
        for _ in range(requests):
            try:
                lease = await limiter.acquire(business, method, time.monotonic() + 30)
            except Exception as exc:  # counted, not raised: the test says how many
                errors.append(exc)
                continue
            held[business] += 1
            most[business] = max(most[business], held[business])
            await asyncio.sleep(0)  # the request, as short as it gets: slots turn over fast
            held[business] -= 1
            served += 1
            await limiter.finish(lease, 200, None)

    await asyncio.gather(*(work(b, methods[i % 2]) for b in businesses for i in range(tasks)))
    return served, errors, most


async def within(call: Awaitable[Any], seconds: float = 60.0) -> Any:
    return await asyncio.wait_for(call, seconds)


async def test_a_thousand_businesses_at_once_through_ten_connections(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url, max_connections=10)
    businesses = range(1, 1001)
    try:
        async with (
            RedisLimiter(client=client, prefix="scale", limits=NO_BUCKET) as limiter,
            most_connections(redis_server.url) as connections,
        ):
            scripts = ScriptCalls(limiter)
            started = time.monotonic()
            # six coroutines per business against a cap of four: slot waits too
            served, errors, most = await within(serve_all(limiter, businesses, 6, 1))
            elapsed = time.monotonic() - started
            assert not limiter._slot_gates and not limiter._method_gates
    finally:
        await client.aclose()
    print(f"6,000 requests of 1,000 businesses in {elapsed:.2f} s: {scripts.calls} scripts,")
    print(f"at most {connections[0]} connections")
    assert errors == []
    assert served == 1000 * 6
    assert max(most.values()) <= CAP
    assert 2 <= connections[0] <= 10  # pub/sub's one and nine script calls at most
    assert scripts.most_per_key == 1


async def test_the_smallest_pool_serves_every_business(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, max_connections=2)
    try:
        async with RedisLimiter(client=client, prefix="tiny", limits=NO_BUCKET) as limiter:
            served, errors, most = await within(serve_all(limiter, range(1, 101), 6, 2))
    finally:
        await client.aclose()
    assert errors == []
    assert served == 100 * 6 * 2
    assert max(most.values()) <= CAP


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda url: {"client": redis.Redis.from_url(url, max_connections=1)}, "client"),
        (lambda url: {"redis_url": f"{url}?max_connections=1"}, "redis_url"),
    ],
)
async def test_a_pool_too_small_is_refused_before_any_call(
    redis_server: RedisServer, make: Callable[[str], dict[str, Any]], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        RedisLimiter(**make(redis_server.url))
    message = str(caught.value)
    assert field in message and "max_connections=1" in message and "at least 2" in message


async def test_many_waiters_on_one_key_poll_redis_one_at_a_time(
    redis_server: RedisServer,
) -> None:
    async with RedisLimiter(redis_server.url, prefix="one", limits=NO_BUCKET) as limiter:
        scripts = ScriptCalls(limiter)
        held = [await limiter.acquire(1, "get_chats") for _ in range(CAP)]
        waiters = [asyncio.create_task(limiter.acquire(1, "get_chats")) for _ in range(300)]
        # the head asks, hears "full", and waits for a wake-up; the rest ask nothing
        await until(lambda: scripts.calls > CAP and bool(limiter._slot_gates), timeout=10)
        calls_while_full = scripts.calls
        for lease in held:
            await limiter.finish(lease, 200, None)
        for task in waiters:  # in order: each freed slot goes to the next in line
            await limiter.finish(await within(task, 10), 200, None)
    # one take per request, and a few more for a head told "full" before a finish came
    print(f"300 waiters: {scripts.calls} script calls ({calls_while_full} while full)")
    assert calls_while_full <= CAP + 2
    assert scripts.calls <= CAP + 300 * 2
    assert scripts.most_per_key == 1


async def test_a_wait_for_a_connection_ends_at_the_deadline(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, max_connections=2)
    try:
        async with RedisLimiter(client=client, prefix="dl", limits=NO_BUCKET) as limiter:
            scripts = ScriptCalls(limiter)
            calls = limiter._redis_store.calls
            await calls.enter(None)  # the one call the pool allows, in flight "forever"
            started = time.monotonic()
            with pytest.raises(WaitTooLong) as caught:
                await within(limiter.acquire(1, "get_chats", started + 0.3), 5)
            elapsed = time.monotonic() - started
            assert caught.value.retry_in is None and 0.25 <= elapsed < 1.5, elapsed
            assert "call slot of the Redis limiter" in (caught.value.waited_for or "")
            cancelled = asyncio.create_task(limiter.acquire(2, "get_chats"))
            await until(lambda: bool(calls._queue), timeout=10)  # it waits for the connection
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert scripts.calls == 0  # neither waiter sent anything
            calls.leave()
            lease = await within(limiter.acquire(1, "get_chats", time.monotonic() + 1), 5)
            await limiter.finish(lease, 200, None)
            assert not limiter._slot_gates and not limiter._method_gates
    finally:
        await client.aclose()


async def test_subscriptions_asked_at_once_share_one_connection(
    redis_server: RedisServer,
) -> None:
    # Fifty businesses whose caps fill at once, before pub/sub has its
    # connection: each first SUBSCRIBE used to take one of its own (leaked).
    client = redis.Redis.from_url(redis_server.url, max_connections=10)
    limiter = RedisLimiter(client=client, prefix="subs")
    try:
        store = limiter._redis_store
        watched = await within(
            asyncio.gather(*(store.watch(f"subs:{{{b}}}:slots") for b in range(50))), 5
        )
        assert all(watched)
        pool = client.connection_pool
        assert len(pool._in_use_connections) + len(pool._available_connections) == 1
    finally:
        await limiter.close()
        await client.aclose()
