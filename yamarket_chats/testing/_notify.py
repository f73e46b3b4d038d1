"""The fake's push notifications: POST chat events to a registered URL.

Hooked into :attr:`FakeMarket.listeners` by :meth:`FakeServer.notify_to`:
every chat added and message appended (seeded ones aside, sends through the
API included) becomes a ``CHAT_CREATED`` / ``CHAT_MESSAGE_SENT`` body, posted
in order by one background task of the fake's loop. Bodies look like the real
API's: camelCase, ``messageId`` as a string, times in ISO 8601 with offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp

from ._data import FakeChat, FakeMarket
from ._wire import FakeMessage

logger = logging.getLogger("yamarket_chats.testing")

#: Market waits this long for the answer to a ``PING`` (10 s for other events).
PING_TIMEOUT = 1.0
_JSON = {"Content-Type": "application/json"}


@dataclasses.dataclass
class NotificationDelivery:
    """One POST of a notification and how the receiver answered it."""

    payload: dict[str, Any]
    attempt: int  #: 1, or 2 for the repeated delivery of ``duplicate=True``
    status: int | None = None  #: ``None`` when the request failed
    body: bytes = b""
    error: str | None = None  #: why the request failed (connection, timeout, a bug)


def chat_created_payload(chat: FakeChat) -> dict[str, Any]:
    """The ``CHAT_CREATED`` body for a chat of the fake."""
    return {
        "notificationType": "CHAT_CREATED",
        "businessId": chat.business_id,
        "chatId": chat.chat_id,
        "createdAt": chat.created_at.isoformat(),
    }


def message_sent_payload(chat: FakeChat, message: FakeMessage) -> dict[str, Any]:
    """The ``CHAT_MESSAGE_SENT`` body for a message (``messageId`` a string, as live)."""
    return {
        "notificationType": "CHAT_MESSAGE_SENT",
        "businessId": chat.business_id,
        "chatId": chat.chat_id,
        "messageId": str(message.message_id),
        "sentAt": message.created_at.isoformat(),
    }


def ping_payload(*, with_time: bool = True) -> dict[str, Any]:
    """A ``PING`` body with the time now (``time`` is optional in the spec)."""
    if not with_time:
        return {"notificationType": "PING"}
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return {"notificationType": "PING", "time": now.isoformat()}


class FakeNotifier:
    """Posts the fake's chat events to ``url``; see :meth:`FakeServer.notify_to`.

    ``deliveries`` records every POST and its answer. With ``duplicate`` set,
    each event is posted twice (the second after the first is answered), as
    Market may do. ``headers`` are added to every POST (e.g. a secret header a
    proxy would add). ``timeout`` bounds each answer, as Market does (10 s);
    a ``PING`` gets at most 1 s, Market's limit for it. Must be made inside
    the running event loop.
    """

    def __init__(
        self, market: FakeMarket, url: str, *, duplicate: bool = False, timeout: float = 10.0
    ) -> None:
        self.market = market
        self.url = url
        self.duplicate = duplicate
        self.timeout = timeout
        self.deliveries: list[NotificationDelivery] = []
        self.headers: dict[str, str] = {}
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue: asyncio.Queue[tuple[dict[str, Any], bytes, bool]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"FakeNotifier(url={self.url!r}, queued={self._queue.qsize()})"

    # -- the market listener ---------------------------------------------------

    def on_change(self, event: str, chat: FakeChat, message: FakeMessage | None) -> None:
        """The :attr:`FakeMarket.listeners` hook: queue the matching notification."""
        if event == "chat_created":
            self.send_soon(chat_created_payload(chat))
        elif event == "message_sent" and message is not None:
            self.send_soon(message_sent_payload(chat, message))

    def send_soon(self, payload: Mapping[str, Any], *, duplicate: bool | None = None) -> None:
        """Queue any body (arbitration, order events, junk) behind the pending ones.

        The payload is serialised here, so one that JSON cannot hold raises
        ``TypeError``/``ValueError`` to the caller instead of stalling the queue.
        """
        if self._closed:
            return
        body = _encode(payload)
        item = (dict(payload), body, self.duplicate if duplicate is None else duplicate)
        if threading.get_ident() == self._thread:
            self._enqueue(item)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, item)

    def _enqueue(self, item: tuple[dict[str, Any], bytes, bool]) -> None:
        self._queue.put_nowait(item)
        if self._worker is None:
            self._worker = self._loop.create_task(self._work(), name="fake-notifier")

    async def _work(self) -> None:
        while True:
            payload, body, duplicate = await self._queue.get()
            try:
                await self._deliver(payload, body, duplicate)
            except Exception:  # a bug must not stop the deliveries behind it
                logger.exception("fake notifier: delivering %s failed", payload)
            finally:
                self._queue.task_done()

    # -- sending now -------------------------------------------------------------

    async def send(
        self, payload: Mapping[str, Any], *, duplicate: bool = False
    ) -> list[NotificationDelivery]:
        """POST a body now (twice with ``duplicate``); return the deliveries.

        Raises ``TypeError``/``ValueError`` before any POST for a payload
        JSON cannot hold.
        """
        return await self._deliver(dict(payload), _encode(payload), duplicate)

    async def ping(self, *, with_time: bool = True) -> NotificationDelivery:
        """POST a ``PING`` now (without ``time`` if asked) and return how it was answered.

        It waits at most 1 s (or ``timeout`` if shorter): Market's limit.
        """
        payload = ping_payload(with_time=with_time)
        return await self._post(payload, _encode(payload), 1)

    async def _deliver(
        self, payload: dict[str, Any], body: bytes, duplicate: bool
    ) -> list[NotificationDelivery]:
        done = [await self._post(payload, body, 1)]
        if duplicate:
            done.append(await self._post(dict(payload), body, 2))
        return done

    async def _post(
        self, payload: dict[str, Any], body: bytes, attempt: int
    ) -> NotificationDelivery:
        delivery = NotificationDelivery(payload, attempt)
        self.deliveries.append(delivery)
        limit = self.timeout
        if payload.get("notificationType") == "PING":
            limit = min(limit, PING_TIMEOUT)
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            async with self._session.post(
                self.url,
                data=body,
                headers={**_JSON, **self.headers},
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as response:
                delivery.body = await response.read()
                delivery.status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            logger.warning("notification to %s failed: %s", self.url, delivery.error)
        except Exception as exc:  # recorded, so the caller and the queue carry on
            delivery.error = f"{type(exc).__name__}: {exc}"
            logger.exception("notification to %s failed", self.url)
        return delivery

    # -- waiting and stopping ------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until every queued notification was posted and answered."""
        await self._queue.join()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop taking events, finish the queue (up to ``timeout`` s), close the session."""
        self._closed = True
        if self._worker is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            self._worker.cancel()
            await asyncio.wait([self._worker])
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None


def _encode(payload: Mapping[str, Any]) -> bytes:
    """The body as aiohttp's ``json=`` would send it; raises for what JSON cannot hold."""
    return json.dumps(dict(payload)).encode()
