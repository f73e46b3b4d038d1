"""A fake Yandex Market chats API for tests, benchmarks and demos.

>>> async with run_fake_server() as server:  # doctest: +SKIP
...     server.url, server.api_key

The public names load on first use (PEP 562): the pytest plugin lives in this
package and is loaded by every pytest run of an environment with yamarket-chats
installed, so importing the package must not import the fake (aiohttp, msgspec).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from ._config import DEFAULT_QUOTAS, OPERATIONS, FakeMarketConfig
    from ._data import FakeChat, FakeMarket
    from ._faults import FAULT_KINDS, Fault, Faults
    from ._journal import Journal, JournalEntry
    from ._notify import FakeNotifier, NotificationDelivery
    from ._server import FakeServer, run_fake_server
    from ._tls import SelfSignedTLS, self_signed_tls
    from ._wire import FakeMessage, FakePayload

__all__ = [
    "DEFAULT_QUOTAS",
    "FAULT_KINDS",
    "OPERATIONS",
    "FakeChat",
    "FakeMarket",
    "FakeMarketConfig",
    "FakeMessage",
    "FakeNotifier",
    "FakePayload",
    "FakeServer",
    "Fault",
    "Faults",
    "Journal",
    "JournalEntry",
    "NotificationDelivery",
    "SelfSignedTLS",
    "run_fake_server",
    "self_signed_tls",
]

# Each public name and the module that defines it (the imports above, for run time).
_MODULES: dict[str, str] = {
    "DEFAULT_QUOTAS": "._config",
    "OPERATIONS": "._config",
    "FakeMarketConfig": "._config",
    "FakeChat": "._data",
    "FakeMarket": "._data",
    "FAULT_KINDS": "._faults",
    "Fault": "._faults",
    "Faults": "._faults",
    "Journal": "._journal",
    "JournalEntry": "._journal",
    "FakeNotifier": "._notify",
    "NotificationDelivery": "._notify",
    "FakeServer": "._server",
    "run_fake_server": "._server",
    "SelfSignedTLS": "._tls",
    "self_signed_tls": "._tls",
    "FakeMessage": "._wire",
    "FakePayload": "._wire",
}


if not TYPE_CHECKING:  # hidden from type checkers: a misspelt name stays an error, not Any
    __getattr__, __dir__ = attach(__name__, _MODULES, __all__)
