"""Pytest fixtures for the fake Market API (loaded through the ``pytest11`` entry point).

Override ``yamarket_fake_config`` in a ``conftest.py`` or a test module to
configure the server that ``yamarket_fake`` starts. The fake itself (aiohttp,
msgspec) is imported only when a fixture is used, to keep pytest startup cheap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from . import FakeMarketConfig, FakeServer


@pytest.fixture
def yamarket_fake_config() -> FakeMarketConfig:
    """The configuration of ``yamarket_fake``; override it to change the seeded data or limits."""
    from . import FakeMarketConfig

    return FakeMarketConfig()


@pytest_asyncio.fixture
async def yamarket_fake(yamarket_fake_config: FakeMarketConfig) -> AsyncIterator[FakeServer]:
    """A fake Market API server running on a free loopback port for one test."""
    from . import run_fake_server

    async with run_fake_server(yamarket_fake_config) as server:
        yield server
