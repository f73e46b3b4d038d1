"""Shared fixtures: a fake Market on loopback and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from tests.pg_server import PostgresServer, server_or_skip
from yamarket_chats import ChatsClient
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

if TYPE_CHECKING:
    import asyncpg

BUSINESS = 1001

# Fast retries for tests: the policy is the same, only the delays shrink.
FAST = {"backoff": 0.01, "max_backoff": 0.05}

#: Tests that take seconds of wall time (builds, real quota windows, real
#: processes killed and restarted). They go to the xdist workers first, so that
#: none starts last and holds the run open while the other workers sit idle.
#: The random order holds among them, and among the rest.
SLOW_FIRST = (
    "tests/test_packaging.py::",
    "tests/test_bench_smoke.py::test_quick_benchmark_runs_and_writes_results",
    "tests/test_redis_limits.py::test_four_workers_share_one_quota_without_420",
    "tests/test_redis_limits.py::test_workers_on_skewed_clocks_share_one_quota_without_420",
    "tests/test_redis_limits.py::test_a_killed_worker_frees_its_slots_within_the_lease",
    "tests/test_postgres.py::test_ten_sigkills_lose_nothing_and_store_nothing_twice",
    "tests/test_postgres.py::test_a_killed_syncs_lease_lapses",
    "tests/test_cli_hardening.py::test_repeated_signals_at_any_moment_never_kill_the_process",
    "tests/test_cli_hardening.py::test_a_signal_in_the_first_half_second_exits_cleanly",
    "tests/test_fake_schemathesis.py::test_conforms_to_spec",
    "tests/test_limits_differential.py::test_the_redis_store_answers_as_the_model_does",
    "tests/test_fleet.py::test_a_killed_workers_businesses_are_finished_by_the_others",
    "tests/test_fleet.py::test_two_workers_split_the_cabinets_and_never_share_one",
    "tests/test_cli_lazy.py::test_mypy_strict_sees_every_public_name",
)


@pytest.hookimpl(trylast=True)  # after pytest-randomly has shuffled them
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (a stable sort: each group keeps its order)."""
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))


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
