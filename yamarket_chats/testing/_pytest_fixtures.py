"""The async pytest fixtures of `pytest_plugin`, registered only when pytest-asyncio is active."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from ._config import FakeMarketConfig
from ._server import FakeServer, run_fake_server


@pytest_asyncio.fixture
async def yamarket_fake(yamarket_fake_config: FakeMarketConfig) -> AsyncIterator[FakeServer]:
    """A fake Market API server running on a free loopback port for one test."""
    async with run_fake_server(yamarket_fake_config) as server:
        yield server
