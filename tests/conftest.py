"""Shared fixtures: a fake Market on loopback and clients pointed at it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from tests.pg_server import PostgresServer, server_or_skip
from tests.servers import RedisServer
from yamarket_chats import ChatsClient
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

if TYPE_CHECKING:
    import asyncpg

BUSINESS = 1001

# The suite decides what the library reads from the environment: a developer's
# own exported key or address must not leak into tests (or the processes they start).
for _variable in [name for name in os.environ if name.startswith("YANDEX_MARKET_")]:
    del os.environ[_variable]

# Fast retries for tests: the policy is the same, only the delays shrink.
FAST = {"backoff": 0.01, "max_backoff": 0.05}


def unmeasured_env() -> dict[str, str]:
    """This environment, minus the variable through which `make test` measures the
    coverage of every Python process a test starts (for processes not worth it)."""
    return {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"}


@pytest_asyncio.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeServer]:
    """A fake server; parametrize indirectly with a FakeMarketConfig to change it."""
    config = getattr(request, "param", None) or FakeMarketConfig(
        businesses=(BUSINESS, 2002), chats_per_business=5, messages_per_chat=230
    )
    async with run_fake_server(config) as server:
        yield server


@pytest_asyncio.fixture
async def make_client(fake: FakeServer) -> AsyncIterator[Callable[..., ChatsClient]]:
    """Build clients against `fake`; all are closed at teardown."""
    made: list[ChatsClient] = []

    def make(**kwargs: Any) -> ChatsClient:
        options: dict[str, Any] = {"api_key": fake.api_key, "base_url": fake.url, **FAST}
        options.update(kwargs)
        client = ChatsClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest_asyncio.fixture
async def client(make_client: Callable[..., ChatsClient]) -> ChatsClient:
    """A client with default limits against `fake`."""
    return make_client()


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL for the whole run (skips locally, fails in CI, if missing)."""
    server = server_or_skip()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server of the test's own (skips locally, fails in CI, if missing)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg: PostgresServer) -> str:
    """A fresh database of the run's server."""
    return pg.create_database()


@pytest_asyncio.fixture
async def db(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to `pg_url` (asyncpg is imported only by the tests that use it)."""
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()
