"""Quotas, their headers, refunds and the parallel-requests cap of the fake."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from email.utils import formatdate, parsedate_to_datetime

import aiohttp
import pytest

from tests.fake_helpers import BUSINESS, Api, connect, error_message
from tests.virtual_clock import ManualClock
from yamarket_chats.testing import FakeMarketConfig, FakeServer

WINDOW = 2.0


@pytest.fixture
def yamarket_fake_config() -> FakeMarketConfig:
    return FakeMarketConfig(quota_window=WINDOW, quotas={"get_chat": 3, "send_message_to_chat": 2})


@pytest.fixture
def clock() -> ManualClock:
    """The fake's quota clock, at the start of a window: it moves only when a test says."""
    return ManualClock(1_800_000_000.0)


@pytest.fixture
async def api(yamarket_fake: FakeServer, clock: ManualClock) -> AsyncIterator[Api]:
    yamarket_fake.clock = clock
    async with connect(yamarket_fake) as api:
        yield api


async def get_chat(api: Api, chat_id: int | None = None) -> tuple[int, dict[str, str]]:
    if chat_id is None:
        chat_id = api.server.market.chats(BUSINESS)[0].chat_id
    status, _, response = await api.call("GET", "/chat", params={"chatId": chat_id})
    return status, dict(response.headers)


async def test_default_quotas_follow_the_spec() -> None:
    config = FakeMarketConfig()
    assert config.quota("get_chats") == 5000
    assert config.quota("get_chat_history") == 10000
    assert config.quota("create_chat") == config.quota("send_file_to_chat") == 1000


async def test_quota_headers_then_420_then_reset(api: Api, clock: ManualClock) -> None:
    clock.advance(0.5)
    remaining = []
    for _ in range(3):
        status, headers = await get_chat(api)
        assert status == 200
        assert headers["X-RateLimit-Resource-Limit"] == "3"
        remaining.append(headers["X-RateLimit-Resource-Remaining"])
    assert remaining == ["2", "1", "0"]
    window_end = math.ceil((clock.now // WINDOW + 1) * WINDOW)
    assert headers["X-RateLimit-Resource-Until"] == formatdate(window_end, usegmt=True)
    assert headers["Date"] == formatdate(clock.now, usegmt=True)  # on the same clock

    status, body, response = await api.call("GET", "/chat", params={"chatId": 1})
    assert status == 420 and body["errors"][0]["code"] == "LIMIT_EXCEEDED"
    assert error_message(body) == (
        "Hit rate limit of 3 requests per 2 seconds for resource "
        "/v2/businesses/{businessId}/chat for businessId 1001"
    )
    assert response.headers["X-RateLimit-Resource-Remaining"] == "0"
    # Other operations have their own quota.
    _, _, response = await api.call("POST", "/chats", json={})
    assert response.headers["X-RateLimit-Resource-Remaining"] == "4999"

    until = parsedate_to_datetime(response.headers["X-RateLimit-Resource-Until"]).timestamp()
    clock.advance(until - clock.now - 0.01)  # the last moment of the window: still spent
    status, headers = await get_chat(api)
    assert status == 420 and headers["X-RateLimit-Resource-Remaining"] == "0"
    clock.advance(0.01)  # -Until: a new window
    status, headers = await get_chat(api)
    assert status == 200 and headers["X-RateLimit-Resource-Remaining"] == "2"


async def test_errors_carry_headers_and_4xx_spend_quota(api: Api) -> None:
    status, headers = await get_chat(api, chat_id=999)
    assert status == 404 and headers["X-RateLimit-Resource-Remaining"] == "2"
    status, _, response = await api.call("GET", "/chat", params={"chatId": 1}, headers={})
    assert status == 401 and response.headers["X-RateLimit-Resource-Remaining"] == "2"


async def test_5xx_and_drops_are_refunded(api: Api) -> None:
    chat_id = api.server.market.chats(BUSINESS)[0].chat_id
    api.server.faults.add("status_500", times=2, operations=["send_message_to_chat"])
    # A POST: aiohttp silently retries idempotent requests on a dropped connection.
    api.server.faults.add("drop", times=1, operations=["send_message_to_chat"])

    async def send() -> tuple[int, str]:
        status, _, response = await api.call(
            "POST", "/chats/message", params={"chatId": chat_id}, json={"message": "hi"}
        )
        return status, response.headers["X-RateLimit-Resource-Remaining"]

    assert [await send() for _ in range(2)] == [(500, "2"), (500, "2")]
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send()
    assert [await send() for _ in range(3)] == [(200, "1"), (200, "0"), (420, "0")]


async def test_status_500_after_acting_is_refunded_too(api: Api) -> None:
    chat_id = api.server.market.chats(BUSINESS)[0].chat_id
    api.server.faults.add("status_500_after", times=1)
    statuses = []
    for _ in range(4):
        status, _, _ = await api.call(
            "POST", "/chats/message", params={"chatId": chat_id}, json={"message": "hi"}
        )
        statuses.append(status)
    assert statuses == [500, 200, 200, 420]


async def test_parallel_cap(api: Api) -> None:
    server = api.server
    server.faults.add("latency", delay=1.0, times=4)
    held = [asyncio.create_task(api.call("POST", "/chats", json={})) for _ in range(4)]
    await server.wait_in_flight(BUSINESS, 4)
    status, body, response = await api.call("POST", "/chats", json={})
    assert status == 420
    assert error_message(body) == "Hit rate limit of 4 parallel requests for businessId 1001"
    # Quota is left: Remaining is > 0 and the refused request did not count.
    assert response.headers["X-RateLimit-Resource-Remaining"] == "4996"
    assert [r[0] for r in await asyncio.gather(*held)] == [200] * 4
    assert server.peak_parallel[BUSINESS] == 4
    assert server.in_flight[BUSINESS] == 0
    _, _, response = await api.call("POST", "/chats", json={})
    assert response.headers["X-RateLimit-Resource-Remaining"] == "4995"


async def test_parallel_cap_is_configurable() -> None:
    from yamarket_chats.testing import run_fake_server

    async with run_fake_server(FakeMarketConfig(max_parallel=2)) as server, connect(server) as api:
        server.faults.add("latency", delay=1.0, times=2)
        held = [asyncio.create_task(api.call("POST", "/chats", json={})) for _ in range(2)]
        await server.wait_in_flight(BUSINESS, 2)
        status, body, _ = await api.call("POST", "/chats", json={})
        message = "Hit rate limit of 2 parallel requests for businessId 1001"
        assert (status, error_message(body)) == (420, message)
        await asyncio.gather(*held)


@pytest.mark.parametrize(
    ("window", "period"),
    [(3600.0, "hour"), (60.0, "minute"), (86400.0, "day"), (1.5, "1.5 seconds")],
)
async def test_a_spent_quota_says_so_in_the_apis_words(window: float, period: str) -> None:
    from yamarket_chats.testing import run_fake_server

    config = FakeMarketConfig(businesses=(2002,), quota_window=window, quotas={"create_chat": 1})
    async with run_fake_server(config) as server, connect(server) as api:
        server.clock = ManualClock(1_800_000_000.0)  # no window turns over mid-test
        order_id = server.market.chats(2002)[0].order_id
        await api.ok("POST", "/chats/new", json={"orderId": order_id}, business=2002)
        status, body, _ = await api.call(
            "POST", "/chats/new", json={"orderId": order_id}, business=2002
        )
    assert status == 420 and body["errors"][0]["code"] == "LIMIT_EXCEEDED"
    assert error_message(body) == (
        f"Hit rate limit of 1 requests per {period} for resource "
        "/v2/businesses/{businessId}/chats/new for businessId 2002"
    )


async def test_limits_disabled() -> None:
    from yamarket_chats.testing import run_fake_server

    config = FakeMarketConfig(limits_enabled=False, quotas={"get_chats": 1})
    async with run_fake_server(config) as server, connect(server) as api:
        server.faults.add("latency", delay=0.3, times=6)
        results = await asyncio.gather(*(api.call("POST", "/chats", json={}) for _ in range(6)))
        assert [r[0] for r in results] == [200] * 6
        assert "X-RateLimit-Resource-Limit" not in results[0][2].headers
        assert server.peak_parallel[BUSINESS] == 6
