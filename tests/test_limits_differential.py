"""The Redis store (quota.lua) against the in-process store, the reference model.

Hypothesis writes random histories: requests of random (business, method)
keys, their answers (2xx, 4xx, 420, 5xx, never sent; with or without the
server's count), and clock moves. Both stores live through the same history
on the same clock (a virtual event loop for the model, the script's test-only
``now`` for Redis) and must give the same answer at every step: the same kind,
the same seconds (to 1e-9), the same result of every finish. Leases outlast
any history, so lease expiry (Redis only) never enters; the worker's hint
(Redis only: a count Redis lost, restored from what the worker knows) enters
only where a test makes Redis lose its keys, and must then keep the answers
the model's.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
from collections.abc import Awaitable, Callable, Iterator
from email.utils import formatdate
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.servers import RedisServer
from tests.virtual_clock import VirtualClock
from yamarket_chats.limits import RateLimit, server_count
from yamarket_chats.limits._engine import SLOT, Answer
from yamarket_chats.limits._local import LocalStore
from yamarket_chats.limits._redis_store import RedisStore

METHODS = ("get_chat", "get_chats", "send_message_to_chat")
START = 1_700_000_000.0  # both clocks read the same numbers (Redis TIME is epoch-like)
DATE = 1_704_067_200  # the server's Date: far from our clock, so it is used
LEASE = 1e7  # seconds: longer than any history
T = TypeVar("T")

rates = st.one_of(
    st.none(),
    st.builds(
        RateLimit,
        amount=st.integers(1, 12),
        period_seconds=st.sampled_from([1.0, 2.5, 60.0, 3600.0]),
        burst=st.none(),
    ),
    st.integers(1, 12).flatmap(
        lambda amount: st.builds(
            RateLimit,
            amount=st.just(amount),
            period_seconds=st.sampled_from([0.3, 10.0, 3600.0]),
            burst=st.integers(1, amount),
        )
    ),
)
counts = st.one_of(
    st.none(),
    st.tuples(
        st.integers(0, 3),  # -Remaining: low, so that windows get spent
        st.sampled_from([0, 1, 5, 30, 90]),  # -Until after the Date: few, as windows are
        st.booleans(),  # with the Date (else -Until is long past on our clock: 0 s)
    ),
)
# Most steps on one key, so that its rules meet each other.
acquire = st.tuples(
    st.just("acquire"),
    st.sampled_from([1, 1, 1, 2]),
    st.sampled_from(["get_chat", "get_chat", "get_chats", "send_message_to_chat"]),
)
finish = st.tuples(
    st.just("finish"),
    st.integers(0, 10),  # which lease in flight
    st.sampled_from([200, 204, 404, 420, 500, 503, 599]),
    counts,
)
seconds = st.one_of(st.sampled_from([0.0, 0.1, 0.3, 0.7, 5.0, 60.0]), st.floats(0.0, 40.0))
tick = st.tuples(st.just("tick"), seconds)
steps = st.lists(st.one_of(acquire, acquire, finish, finish, tick), min_size=10, max_size=80)


def headers(count: tuple[int, int, bool] | None) -> dict[str, str]:
    if count is None:
        return {}
    remaining, until, dated = count
    out = {
        "X-RateLimit-Resource-Remaining": str(remaining),
        "X-RateLimit-Resource-Until": formatdate(DATE + until, usegmt=True),
    }
    if dated:
        out["Date"] = formatdate(DATE, usegmt=True)
    return out


def settle(loop: asyncio.AbstractEventLoop, call: Callable[..., T | Awaitable[T]], *args: Any) -> T:
    """``call(*args)`` of a store, run in `loop`: its answer, given at once or awaited."""

    async def inside() -> T:
        result = call(*args)
        return await result if inspect.isawaitable(result) else result  # type: ignore[return-value]

    return loop.run_until_complete(inside())


def same(model: Answer | float, lua: Answer | float) -> bool:
    if isinstance(model, float) or isinstance(lua, float):
        assert isinstance(model, float) and isinstance(lua, float)
        return math.isclose(model, lua, rel_tol=1e-9, abs_tol=1e-9)
    if model[0] is not lua[0]:
        return False
    if model[0] is SLOT:  # the model's leases never end; Redis's say when they do
        return model[1] is None and lua[1] is not None
    assert model[1] is not None and lua[1] is not None
    return math.isclose(model[1], lua[1], rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    server.start()
    yield server.url
    server.stop()


prefixes = itertools.count()


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    limits=st.fixed_dictionaries({method: rates for method in METHODS}),
    cap=st.sampled_from([None, 1, 2, 3]),
    history=steps,
)
# Edges too narrow for chance to find each time; always run:
@example(  # a late answer 0.3 s before the known reset is of the same window
    limits=dict.fromkeys(METHODS),
    cap=None,
    history=[
        *[("acquire", 1, "get_chat")] * 3,
        ("finish", 0, 200, (3, 1, True)),
        ("tick", 0.7),
        ("finish", 0, 200, (0, 0, True)),
    ],
)
@example(  # a refund outlived by the drain: the next take starts the bucket afresh
    limits={**dict.fromkeys(METHODS), "get_chat": RateLimit(1, 10.0, burst=1)},
    cap=None,
    history=[
        ("acquire", 1, "get_chat"),
        ("finish", 0, 599, None),
        ("tick", 5.0),
        *[("acquire", 1, "get_chat")] * 2,
    ],
)
def test_the_redis_store_answers_as_the_model_does(
    redis_url: str,
    limits: dict[str, RateLimit | None],
    cap: int | None,
    history: list[tuple[Any, ...]],
) -> None:
    replay(redis_url, limits, cap, history)


def test_a_count_redis_lost_comes_back_from_the_workers_hint(redis_url: str) -> None:
    # Redis loses its keys (a restart without persistence, a failover, an
    # eviction) in the middle of a window the worker knows 2 requests short of
    # spent: it still answers as the model, which lost nothing. Before, the
    # count was gone: the third request went out into a spent window.
    replay(
        redis_url,
        dict.fromkeys(METHODS),
        None,
        [
            *[("acquire", 1, "get_chat")] * 2,
            ("finish", 0, 200, (3, 30, True)),  # 3 left, one of ours still out
            ("finish", 0, 200, None),
            ("forget",),
            *[("acquire", 1, "get_chat")] * 3,  # go, go, the window (30 s)
            ("tick", 31.0),
            ("acquire", 1, "get_chat"),  # over: the server counts afresh
        ],
    )


def replay(
    redis_url: str,
    limits: dict[str, RateLimit | None],
    cap: int | None,
    history: list[tuple[Any, ...]],
) -> None:
    """Both stores through `history`, expecting the same answer at every step.

    Steps: ``("acquire", business, method)``, ``("finish", which, status,
    count)``, ``("tick", seconds)``, and ``("forget",)``: Redis loses every
    key of the store (the model, nothing).
    """
    model_loop, redis_loop = VirtualClock(START), asyncio.new_event_loop()
    client = redis.Redis.from_url(redis_url)
    prefix = f"diff{next(prefixes)}"
    try:
        model = LocalStore(limits, cap)
        shared = RedisStore(
            client,
            limits,
            cap or 0,
            prefix=prefix,
            lease_seconds=LEASE,
            on_error="raise",
            fallback=LocalStore({}, None),
            fraction=1.0,
            where="the test's redis-server",
            on_free=lambda channel: None,
        )
        shared.defer = False  # every finish at once, at the step's time
        shared.clock = lambda: model_loop.now
        held: list[tuple[Any, Any]] = []
        for number, step in enumerate(history):
            if step[0] == "tick":
                model_loop.now += step[1]
                continue
            if step[0] == "forget":
                keys = settle(redis_loop, client.keys, f"{prefix}:*")
                assert keys and settle(redis_loop, client.delete, *keys) == len(keys)
                continue
            if step[0] == "acquire":
                lease = model.lease(step[1], step[2]), shared.lease(step[1], step[2])
                expected = settle(model_loop, model.take, lease[0])
                got = settle(redis_loop, shared.take, lease[1])
                if expected[0] == "go":
                    held.append(lease)
            elif held:
                lease = held.pop(step[1] % len(held))
                count = server_count(headers(step[3]))
                expected = settle(model_loop, model.finish, lease[0], step[2], count)
                got = settle(redis_loop, shared.finish, lease[1], step[2], count)
            else:
                continue
            assert same(expected, got), (number, step, expected, got)
    finally:
        redis_loop.run_until_complete(client.aclose())
        redis_loop.close()
        model_loop.close()
