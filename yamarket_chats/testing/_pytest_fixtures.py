"""The async pytest fixtures of `pytest_plugin`, registered only when pytest-asyncio is active.

Registering them must cost a pytest run nothing: the fake (aiohttp, msgspec)
is imported when a test first asks for a fixture, not when pytest starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio

if TYPE_CHECKING:
    from ._config import FakeMarketConfig
    from ._server import FakeServer


@pytest_asyncio.fixture
async def yamarket_fake(yamarket_fake_config: FakeMarketConfig) -> AsyncIterator[FakeServer]:
    """A fake Market API server running on a free loopback port for one test."""
    from ._server import run_fake_server

    async with run_fake_server(yamarket_fake_config) as server:
        yield server
