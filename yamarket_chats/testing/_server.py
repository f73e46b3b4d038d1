"""Running the fake on a loopback port inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiohttp import web

from ._app import FakeApi
from ._config import FakeMarketConfig
from ._data import FakeMarket
from ._faults import Faults
from ._journal import Journal
from ._notify import FakeNotifier


class FakeServer:
    """A running fake: its base ``url``, credentials, state, journal and faults."""

    def __init__(
        self, config: FakeMarketConfig, url: str, api: FakeApi, http: web.Server | None = None
    ) -> None:
        self.config = config
        #: Base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``
        #: (``https://`` when served with an ``ssl_context``).
        self.url = url
        self.market: FakeMarket = api.market
        self.journal: Journal = api.journal
        self.faults: Faults = api.faults
        self._api = api
        self._http = http
        self._notifier: FakeNotifier | None = None

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (each journal entry names its ``connection``)."""
        return self._api.connections.opened

    @property
    def open_connections(self) -> int:
        """Connections open right now (kept alive, or carrying a request)."""
        return 0 if self._http is None else len(self._http.connections)

    @property
    def api_key(self) -> str:
        """The first configured API key (send it as ``Api-Key``)."""
        return next(iter(self.config.api_keys))

    @property
    def oauth_token(self) -> str:
        """The first configured OAuth token (send it as ``Authorization: Bearer``)."""
        return next(iter(self.config.oauth_tokens))

    @property
    def peak_parallel(self) -> Mapping[int, int]:
        """Most requests of each business processed at the same time so far."""
        return self._api.gate.peak

    @property
    def in_flight(self) -> Mapping[int, int]:
        """Requests of each business being processed right now."""
        return self._api.gate.in_flight

    @property
    def clock(self) -> Callable[[], float]:
        """What the quota windows read as now, in seconds since the epoch (``time.time``).

        Assign a function of your own, such as a test's virtual clock, to move
        across windows without waiting: the ``Date`` and
        ``X-RateLimit-Resource-Until`` headers follow it.
        """
        return self._api.quotas.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self._api.quotas.clock = clock

    async def wait_in_flight(self, business_id: int, count: int) -> None:
        """Wait until ``count`` requests of a business are being processed at once."""
        await self._api.gate.wait_for(business_id, count)

    # -- push notifications ----------------------------------------------------

    @property
    def notifier(self) -> FakeNotifier | None:
        """The active notifier (its ``deliveries``, ``ping()``, ``send()``), if any."""
        return self._notifier

    def notify_to(
        self, url: str, *, duplicate: bool = False, timeout: float = 10.0
    ) -> FakeNotifier:
        """POST a notification to ``url`` for every chat and message added from now on.

        ``CHAT_CREATED`` and ``CHAT_MESSAGE_SENT`` bodies (messages sent through
        the API included) are posted in order by a background task; with
        ``duplicate`` each is posted twice. Call inside the running loop;
        ``await stop_notifying()`` (or leaving ``run_fake_server``) stops it.
        """
        if self._notifier is not None:
            raise RuntimeError("already notifying; await stop_notifying() first")
        notifier = FakeNotifier(self.market, url, duplicate=duplicate, timeout=timeout)
        self.market.listeners.append(notifier.on_change)
        self._notifier = notifier
        return notifier

    async def stop_notifying(self, timeout: float = 5.0) -> None:
        """Stop notifying: finish the queued posts (up to ``timeout`` s), then close."""
        notifier, self._notifier = self._notifier, None
        if notifier is None:
            return
        with contextlib.suppress(ValueError):
            self.market.listeners.remove(notifier.on_change)
        await notifier.aclose(timeout)

    def __repr__(self) -> str:
        return f"FakeServer(url={self.url!r})"


#: Seconds the requests still in flight get to finish when the fake stops; then
#: their connections are closed. The fake answers in microseconds unless told
#: to wait (a ``latency`` fault), so only such waits are cut short.
_SHUTDOWN_GRACE = 0.1


@contextlib.asynccontextmanager
async def run_fake_server(
    config: FakeMarketConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[FakeServer]:
    """Serve a fake Market API on ``host:port`` (0: a free port) for the ``async with`` block.

    With ``ssl_context`` (a server-side context, e.g. ``self_signed_tls().server_context``)
    the fake speaks HTTPS and its ``url`` starts with ``https://``.

    Leaving the block gives requests still in flight 0.1 s to finish, then
    closes their connections: a ``latency`` fault never holds up the exit.
    """
    config = config or FakeMarketConfig()
    api = FakeApi(config, FakeMarket(config), Journal(), Faults(config.seed))
    options: dict[str, Any] = {}
    if config.keep_alive_timeout is not None:
        options["keepalive_timeout"] = config.keep_alive_timeout
    # aiohttp answers a request line over 8 KiB itself, in plain text; a long
    # query must reach the handlers and get the API's JSON 400 instead.
    runner = web.AppRunner(
        api.build(),
        access_log=None,
        handle_signals=False,
        max_line_size=1 << 20,
        max_field_size=1 << 20,
        # Leaving the block must not wait out a latency fault still sleeping.
        shutdown_timeout=_SHUTDOWN_GRACE,
        **options,
    )
    await runner.setup()
    http = runner.server
    assert http is not None
    server: FakeServer | None = None
    listener: asyncio.AbstractServer | None = None
    try:
        # aiohttp's low-level server is the protocol factory (what TCPSite passes
        # to create_server); wrapping it counts every accepted connection.
        listener = await asyncio.get_running_loop().create_server(
            api.connections.counting(http), host, port, ssl=ssl_context
        )
        bound_host, bound_port = listener.sockets[0].getsockname()[:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        scheme = "http" if ssl_context is None else "https"
        url = f"{scheme}://{url_host}:{bound_port}"
        api.market.base_url = url
        server = FakeServer(config, url, api, http)
        yield server
    finally:
        try:
            if server is not None:
                await server.stop_notifying()
        finally:
            if listener is not None:
                listener.close()
            await runner.cleanup()
