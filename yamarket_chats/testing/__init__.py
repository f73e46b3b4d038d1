"""A fake Yandex Market chats API for tests, benchmarks and demos.

>>> async with run_fake_server() as server:  # doctest: +SKIP
...     server.url, server.api_key
"""

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
