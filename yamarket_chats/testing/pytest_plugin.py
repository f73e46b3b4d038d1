"""Pytest fixtures for the fake Market API (loaded through the ``pytest11`` entry point).

Installing yamarket-chats registers this plugin in every pytest run of the
environment, so it must never break a test suite that does not use it: it
imports nothing but pytest (its packages, `yamarket_chats` and
`yamarket_chats.testing`, load their names on first use). The async fixture
``yamarket_fake`` needs pytest-asyncio; it is registered only when
pytest-asyncio's plugin is active, however it was loaded (its entry point,
``-p pytest_asyncio.plugin``), and otherwise a test asking for
it fails with a message saying what to install.

Override ``yamarket_fake_config`` in a ``conftest.py`` or a test module to
configure the server that ``yamarket_fake`` starts. The fake itself (aiohttp,
msgspec) is imported only when a fixture is used, with or without pytest-asyncio
(tests/test_pytest_plugin.py measures it with ``-X importtime``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._config import FakeMarketConfig

# The module holding pytest-asyncio's hooks; its `pytest_asyncio` package is not
# a plugin itself (``-p pytest_asyncio`` registers no hooks).
_ASYNCIO_PLUGIN = "pytest_asyncio.plugin"


@pytest.fixture
def yamarket_fake_config() -> FakeMarketConfig:
    """The configuration of ``yamarket_fake``; override it to change the seeded data or limits."""
    from ._config import FakeMarketConfig

    return FakeMarketConfig()


class _NoAsyncio:
    """Stands in for the async fixtures when pytest-asyncio is not active."""

    @pytest.fixture
    def yamarket_fake(self) -> None:
        """Fails the test: ``yamarket_fake`` needs pytest-asyncio."""
        pytest.fail(
            "the yamarket_fake fixture needs pytest-asyncio: pip install pytest-asyncio"
            " (with PYTEST_DISABLE_PLUGIN_AUTOLOAD set, also -p pytest_asyncio.plugin;"
            " or start a fake yourself with yamarket_chats.testing.run_fake_server)",
            pytrace=False,
        )


def _asyncio_active(config: pytest.Config) -> bool:
    """Whether pytest-asyncio's plugin is registered, under whatever name it was loaded."""
    module = sys.modules.get(_ASYNCIO_PLUGIN)
    return module is not None and config.pluginmanager.is_registered(module)


def pytest_configure(config: pytest.Config) -> None:
    """Register ``yamarket_fake``: the real one if pytest-asyncio is active."""
    if _asyncio_active(config):
        from . import _pytest_fixtures

        config.pluginmanager.register(_pytest_fixtures, "yamarket_chats.fixtures")
    else:
        config.pluginmanager.register(_NoAsyncio(), "yamarket_chats.fixtures")
