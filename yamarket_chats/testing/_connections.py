"""Which TCP connection carried each request, so tests can see connection reuse.

The server counts connections as it accepts them (``opened``); a request's
connection gets an id (1, 2, ...) the first time it carries a request. Ids are
kept per transport in a ``WeakKeyDictionary``, so a closed connection is
forgotten with its transport and a long benchmark run does not grow the table.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable


class _Connection:
    __slots__ = ("id", "requests")

    def __init__(self, connection_id: int) -> None:
        self.id = connection_id
        self.requests = 0


class ConnectionBook:
    """Connections accepted by the fake, and the id and request count of each."""

    def __init__(self) -> None:
        #: TCP connections accepted so far (TLS ones counted before the handshake).
        self.opened = 0
        self._assigned = 0
        self._by_transport: weakref.WeakKeyDictionary[asyncio.BaseTransport, _Connection] = (
            weakref.WeakKeyDictionary()
        )

    def counting(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """Wrap a protocol factory so that every accepted connection is counted."""

        def accept() -> asyncio.Protocol:
            self.opened += 1
            return factory()

        return accept

    def request_on(self, transport: asyncio.BaseTransport | None) -> _Connection:
        """Note one more request on ``transport``; its connection (id 0: unknown)."""
        if transport is None:
            return _Connection(0)
        connection = self._by_transport.get(transport)
        if connection is None:
            self._assigned += 1
            connection = self._by_transport[transport] = _Connection(self._assigned)
        connection.requests += 1
        return connection
