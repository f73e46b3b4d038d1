"""Which aiohttp session a request takes: the one seam between the request loop and aiohttp.

A client holds up to three sessions of its own, made lazily and closed by
`Sessions.close`, or uses the caller's:

- **pooled** (reads, ``keep_alive=True``): connections kept when the server
  allows it. A server may close an idle pooled connection just as a request is
  written to it; such a request never reached the server, so the loop sends it
  again at once on a fresh connection (`Sessions.stale` tells it). Only a
  reused connection can be stale: `_PoolConnector` says which ones were.
- **fresh** (sends always; reads with ``keep_alive=False``): every request opens
  a connection and closes it, so a send never meets a stale one.
- **the caller's** (``session=``), used as configured for reads; a send goes on
  it only if its connector never pools, else through a force-close copy of its
  settings (TLS, DNS, proxy, trace configs, default headers).

The API says Keep-Alive is not supported, and answers ``Connection: close``:
after `_CLOSE_STREAK` such answers in a row, reads skip the pool (its
bookkeeping buys nothing) and go fresh, trying the pool again one read in
`_REPROBE_EVERY`; one kept connection brings reads back to it.

aiohttp keeps some settings only in private attributes. They are read here and
nowhere else, each behind a guard, and tests/test_sessions.py fails if a
release moves one.
"""

from __future__ import annotations

import contextvars
import functools
import socket
import sys
import weakref
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
from aiohttp import hdrs
from aiohttp.client_proto import ResponseHandler

from ..errors import InvalidRequestError, YandexMarketError

__all__ = ["Sessions"]

_CLOSE_STREAK: Final = 8
_REPROBE_EVERY: Final = 64

# Set by `_PoolConnector.connect` in the task that sends a request: whether the
# connection came from the pool (True) or was opened for it (False).
_reused: contextvars.ContextVar[bool] = contextvars.ContextVar("yamarket_reused", default=False)


class _Handler(ResponseHandler):
    """aiohttp's protocol, breaking a reference cycle of Python 3.10-3.11's transports.

    Their selector transport keeps a bound method of itself (``_read_ready_cb``),
    so every closed connection (one per request with ``Connection: close``) is
    left to the cyclic garbage collector: 5-7 objects each, socket included.
    Python 3.12 clears it on close (gh-100348); here it is cleared once the
    connection is lost, when nothing reads from the transport any more.
    """

    _transport: Any = None  # aiohttp's own `transport` is None by the time the connection is lost

    def connection_made(self, transport: Any) -> None:
        # Over TLS the handler gets asyncio's TLS wrapper; the cycle is in the
        # socket transport under it, which the TLS layer forgets before the
        # connection is lost: so it is found here.
        below = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
        self._transport = below or transport
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        transport, self._transport = self._transport, None
        super().connection_lost(exc)
        if getattr(transport, "_read_ready_cb", None) is not None:
            transport._read_ready_cb = None


_BREAK_TRANSPORT_CYCLE: Final = sys.version_info < (3, 12)


def _own_protocol(connector: aiohttp.BaseConnector) -> None:
    """Make `connector` build `_Handler`s (guarded: aiohttp keeps the factory private)."""
    factory = getattr(connector, "_factory", None)
    if (
        _BREAK_TRANSPORT_CYCLE
        and isinstance(factory, functools.partial)
        and factory.func is ResponseHandler
    ):
        connector._factory = functools.partial(  # type: ignore[assignment]
            _Handler, *factory.args, **factory.keywords
        )


class _PoolConnector(aiohttp.TCPConnector):
    """A pooling connector that tells whether a request got a reused connection."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _own_protocol(self)
        self._used: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Any:
        conn = await super().connect(req, traces, timeout)
        protocol = conn.protocol
        used = self._used
        if protocol in used:
            _reused.set(True)
        else:
            _reused.set(False)
            used.add(protocol)
        return conn


class Sessions:
    """The sessions of one client: which one a request takes, the close streak, closing."""

    def __init__(self, caller: aiohttp.ClientSession | None, keep_alive: bool) -> None:
        self.caller = caller  # used as configured; never closed here
        self.keep_alive = keep_alive
        self.closed = False
        self._pooled: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self._callers_fresh: aiohttp.ClientSession | None = None  # sends of a pooling caller
        self._closes = 0  # pooled reads answered `Connection: close` in a row
        self._bypassed = 0  # reads sent fresh since the streak was reached

    def pick(self, idempotent: bool) -> aiohttp.ClientSession:
        """The session a call starts on: reads may pool, sends never take a pooled connection."""
        caller = self.caller
        if caller is not None:
            return caller if idempotent else self._callers_send_session(caller)
        if idempotent and self.keep_alive:
            if self._closes >= _CLOSE_STREAK:
                self._bypassed += 1
                if self._bypassed % _REPROBE_EVERY:
                    return self.fresh()
            return self._pooled_session()
        return self.fresh()

    def fresh(self) -> aiohttp.ClientSession:
        """Our session whose every request opens a new connection and closes it."""
        session = self._fresh
        if session is None:
            self.check_open()
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            _own_protocol(connector)
            session = self._fresh = own_session(connector)
        return session

    def _pooled_session(self) -> aiohttp.ClientSession:
        session = self._pooled
        if session is None:
            self.check_open()
            session = self._pooled = own_session(_PoolConnector(limit=0))
        return session

    def check_open(self) -> None:
        """Raise if this client, or the caller's session, is closed: nothing can be sent."""
        if self.closed:
            raise YandexMarketError("this ChatsClient is closed")
        caller = self.caller
        if caller is not None and caller.closed:
            raise YandexMarketError(
                "the aiohttp session given as session= is closed; nothing was sent"
            )

    # -- around one request --------------------------------------------------

    def begin(self, session: aiohttp.ClientSession) -> None:
        """Before a request on `session` (no await may come between this and the request)."""
        if session is self._pooled:
            _reused.set(False)  # until the connector says otherwise

    def stale(self, session: aiohttp.ClientSession, exc: BaseException) -> bool:
        """Whether `exc` means a pooled connection the server had closed: nothing was sent."""
        return (
            session is self._pooled  # only our own reads use it
            and isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError))
            and not isinstance(exc, aiohttp.ClientConnectorError)
            and _reused.get()
        )

    def answered(self, session: aiohttp.ClientSession, headers: Mapping[str, str]) -> None:
        """Count pooled reads the server answered with ``Connection: close``."""
        if session is self._pooled:
            connection = headers.get(hdrs.CONNECTION)
            if connection is not None and connection.lower() == "close":
                self._closes += 1
            else:
                self._closes = self._bypassed = 0

    # -- the caller's session ------------------------------------------------

    def _callers_send_session(self, caller: aiohttp.ClientSession) -> aiohttp.ClientSession:
        """Where a send goes when the caller gave a session: on a fresh connection.

        A caller's session that opens a connection per request is used as it
        is. One that pools connections could hand a send a pooled socket the
        server has closed, leaving its fate unknown: sends then go through a
        force-close session of ours with the caller's settings.
        """
        connector = caller.connector
        if connector is None or connector.force_close:
            return caller  # (a closed session is reported before the request)
        session = self._callers_fresh
        if session is None:
            self.check_open()
            session = self._callers_fresh = copy_for_sends(caller, connector)
        return session

    async def close(self, *, wait: bool = True) -> None:
        """Close the sessions made here (never the caller's). Idempotent.

        ``wait=False`` only lets them go: their sockets belong to an event
        loop that is gone, where nothing can be awaited any more.
        """
        self.closed = True
        made = (self._pooled, self._fresh, self._callers_fresh)
        self._pooled = self._fresh = self._callers_fresh = None
        for session in made:
            if session is not None and wait:
                await session.close()


def copy_for_sends(
    caller: aiohttp.ClientSession, connector: aiohttp.BaseConnector
) -> aiohttp.ClientSession:
    """A force-close session with `caller`'s TLS, DNS, proxy, trace and header settings."""
    if type(connector) is not aiohttp.TCPConnector:
        # A proxy or socket connector of another kind cannot be copied faithfully.
        raise InvalidRequestError(
            f"sends need a connection of their own, and the session= given pools "
            f"connections through a {type(connector).__name__} the client cannot copy: "
            "make its connector with force_close=True, or let the client make its session"
        )
    # aiohttp keeps these settings only in private attributes (guarded: a
    # release without one falls back to aiohttp's default).
    fresh = aiohttp.TCPConnector(
        force_close=True,
        limit=0,
        ssl=getattr(connector, "_ssl", True),
        family=socket.AddressFamily(connector.family),
        resolver=getattr(connector, "_resolver", None),
    )
    _own_protocol(fresh)
    options: dict[str, Any] = {
        "headers": caller.headers,
        "trust_env": caller.trust_env,
        "trace_configs": list(caller.trace_configs) or None,
    }
    proxy = getattr(caller, "_default_proxy", None)
    if proxy is not None:
        options["proxy"] = proxy
        proxy_auth = getattr(caller, "_default_proxy_auth", None)
        if proxy_auth is not None:  # (deprecated in aiohttp 3.14: passed only when set)
            options["proxy_auth"] = proxy_auth
    return own_session(fresh, **options)


def own_session(connector: aiohttp.BaseConnector, **options: Any) -> aiohttp.ClientSession:
    """A session of ours, with aiohttp's own silent retry turned off.

    aiohttp (3.14 does) sends an idempotent request (GET) a second time when its
    pooled connection drops; the request loop decides retries itself (counted,
    charged, bounded by ``max_retries``), so that one must not happen behind
    it. aiohttp has no public switch for it: the attribute is private, hence
    the guard; no upper bound on aiohttp (a pin would fight the user's
    environment): tests/test_sessions.py fails if a release moves it.
    """
    session = aiohttp.ClientSession(connector=connector, **options)
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session
