"""Push notifications: typed chat events from Yandex Market, received in a web service.

Market sends a ``POST`` with a JSON body to the seller's endpoint
(``<your URL>/notification``) when a chat is created, a message is sent, or an
arbitration starts or finishes, and a ``PING`` to check the endpoint. A
:class:`NotificationReceiver` turns the body into a typed event, answers the
way the API expects at once, drops repeated deliveries, and hands each event
to your async callback in a background task::

    receiver = NotificationReceiver(on_event, name="my-shop", version="1.0")
    answer = await receiver.handle(await request.body())   # any framework
    add_notification_route(app, "/notification", on_event, name=..., version=...)  # aiohttp

Answers: ``200 {"version", "name", "time"}`` for an accepted event, a
``PING`` and a repeated delivery; ``400 {"error": {"type": "WRONG_EVENT_FORMAT"}}``
for a body that is not a notification; ``500 {"error": {"type": "UNKNOWN"}}``
when the seen-set fails (Market delivers again later).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, NamedTuple, Protocol, TypeAlias

import msgspec
from aiohttp import web

from .client import ChatsClient
from .errors import YandexMarketError
from .models import Chat, ChatMessage

__all__ = [
    "CONTENT_TYPE",
    "ChatArbitrageFinishedNotification",
    "ChatArbitrageStartedNotification",
    "ChatCreatedNotification",
    "ChatMessageSentNotification",
    "MemorySeenStore",
    "Notification",
    "NotificationAnswer",
    "NotificationFormatError",
    "NotificationReceiver",
    "PingNotification",
    "SeenStore",
    "UnknownNotification",
    "add_notification_route",
    "decode_notification",
    "dedup_key",
    "fetch_chat",
    "fetch_message",
]

logger = logging.getLogger("yamarket_chats.notifications")

#: The ``Content-Type`` of every answer.
CONTENT_TYPE: Final = "application/json"

_Id = Annotated[int, msgspec.Meta(ge=1)]
# Notifications carry an offset (ISO 8601); a naive time is refused, not guessed.
_Time = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class NotificationFormatError(YandexMarketError, ValueError):
    """The body is not a notification (answered as ``WRONG_EVENT_FORMAT``)."""


class _Known(
    msgspec.Struct,
    tag_field="notificationType",
    rename="camel",
    kw_only=True,
    frozen=True,
):
    """Base of the notification types this library knows."""

    @property
    def notification_type(self) -> str:
        """The ``notificationType`` of the event, e.g. ``"CHAT_CREATED"``."""
        return str(self.__struct_config__.tag)


class PingNotification(_Known, tag="PING", frozen=True):
    """Market checking the endpoint; answered by the receiver, not passed on."""

    time: _Time


class ChatCreatedNotification(_Known, tag="CHAT_CREATED", frozen=True):
    """A chat was created (fetch it with :func:`fetch_chat`)."""

    business_id: _Id
    chat_id: _Id
    created_at: _Time


class ChatMessageSentNotification(_Known, tag="CHAT_MESSAGE_SENT", frozen=True):
    """A message was sent to a chat (fetch it with :func:`fetch_message`).

    ``messageId`` comes as a string in notifications; it is an ``int`` here,
    as everywhere in the API.
    """

    business_id: _Id
    chat_id: _Id
    message_id: _Id
    sent_at: _Time


class ChatArbitrageStartedNotification(_Known, tag="CHAT_ARBITRAGE_STARTED", frozen=True):
    """A dispute (arbitration) was opened in a chat."""

    business_id: _Id
    chat_id: _Id
    started_at: _Time


class ChatArbitrageFinishedNotification(_Known, tag="CHAT_ARBITRAGE_FINISHED", frozen=True):
    """A dispute (arbitration) in a chat was closed."""

    business_id: _Id
    chat_id: _Id
    finished_at: _Time


class UnknownNotification(msgspec.Struct, frozen=True):
    """A notification type this library does not know (orders, returns, later ones).

    ``raw`` is the whole decoded body, ``notificationType`` included.
    """

    notification_type: str
    raw: dict[str, Any]


_KnownNotification: TypeAlias = (
    PingNotification
    | ChatCreatedNotification
    | ChatMessageSentNotification
    | ChatArbitrageStartedNotification
    | ChatArbitrageFinishedNotification
)
#: What :func:`decode_notification` returns; callbacks get all but `PingNotification`.
Notification: TypeAlias = (
    PingNotification
    | ChatCreatedNotification
    | ChatMessageSentNotification
    | ChatArbitrageStartedNotification
    | ChatArbitrageFinishedNotification
    | UnknownNotification
)

_KNOWN_TAGS: Final = frozenset(
    str(cls.__struct_config__.tag)
    for cls in (
        PingNotification,
        ChatCreatedNotification,
        ChatMessageSentNotification,
        ChatArbitrageStartedNotification,
        ChatArbitrageFinishedNotification,
    )
)
_object_decoder: Final = msgspec.json.Decoder(dict[str, Any])
# strict=False: lets the string messageId (and any id sent as a string) become an int.
_known_decoder: Final = msgspec.json.Decoder(_KnownNotification, strict=False)


def decode_notification(body: bytes | str) -> Notification:
    """Decode a notification body; unknown types come back as :class:`UnknownNotification`.

    Raises :class:`NotificationFormatError` for anything that is not a JSON
    object with a string ``notificationType``, or a known type with missing
    or mistyped fields.
    """
    try:
        raw = _object_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise NotificationFormatError(f"not a JSON object: {exc}") from None
    kind = raw.get("notificationType")
    if not isinstance(kind, str) or not kind:
        raise NotificationFormatError("`notificationType` is missing or not a string")
    if kind not in _KNOWN_TAGS:
        return UnknownNotification(kind, raw)
    try:
        event: Notification = _known_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise NotificationFormatError(f"{kind}: {exc}") from None
    return event


def dedup_key(event: Notification) -> str:
    """The key a repeated delivery of ``event`` shares with the first one."""
    if isinstance(event, ChatMessageSentNotification):
        return f"CHAT_MESSAGE_SENT:{event.business_id}:{event.chat_id}:{event.message_id}"
    if isinstance(event, ChatCreatedNotification):
        return f"CHAT_CREATED:{event.business_id}:{event.chat_id}"
    if isinstance(event, ChatArbitrageStartedNotification):
        stamp = event.started_at.timestamp()
        return f"CHAT_ARBITRAGE_STARTED:{event.business_id}:{event.chat_id}:{stamp}"
    if isinstance(event, ChatArbitrageFinishedNotification):
        stamp = event.finished_at.timestamp()
        return f"CHAT_ARBITRAGE_FINISHED:{event.business_id}:{event.chat_id}:{stamp}"
    if isinstance(event, PingNotification):
        return f"PING:{event.time.timestamp()}"
    canonical = msgspec.json.encode(event.raw, order="sorted")
    return f"{event.notification_type}:{hashlib.sha256(canonical).hexdigest()}"


# -- the seen-set ------------------------------------------------------------


class SeenStore(Protocol):
    """Remembers which events were received, to drop repeated deliveries.

    Share one store (e.g. on Redis: ``SET key 1 NX EX ttl``) between the
    workers of a service so a redelivery to another worker is dropped too.
    """

    async def add(self, key: str) -> bool:
        """Remember ``key``; True if it is new, False if it was already there."""
        ...

    async def discard(self, key: str) -> None:
        """Forget ``key`` (after an `add` whose answer was lost), if it is there."""
        ...


class MemorySeenStore:
    """The default :class:`SeenStore`: in-process, bounded by size and age.

    Keeps up to ``max_size`` keys, each for ``ttl`` seconds; past the size the
    oldest are forgotten first.
    """

    def __init__(self, max_size: int = 100_000, ttl: float = 24 * 3600.0) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
        self.max_size = max_size
        self.ttl = ttl
        self._keys: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    async def add(self, key: str) -> bool:
        now = time.monotonic()
        keys = self._keys
        # Expire from the oldest end; insertion order is expiry order.
        while keys:
            oldest, added = next(iter(keys.items()))
            if now - added < self.ttl:
                break
            del keys[oldest]
        if key in keys:
            return False
        keys[key] = now
        while len(keys) > self.max_size:
            keys.popitem(last=False)
        return True

    async def discard(self, key: str) -> None:
        self._keys.pop(key, None)


# -- the receiver ------------------------------------------------------------


class NotificationAnswer(NamedTuple):
    """What to send back: ``status``, JSON ``body``, and the event if it is new."""

    status: int
    body: bytes
    #: The decoded event when it was accepted and handed to the callback
    #: (``None`` for a ping, a duplicate or an error).
    event: Notification | None


class _Ok(msgspec.Struct):
    version: str
    name: str
    time: dt.datetime


class _ErrorDetail(msgspec.Struct):
    type: str
    message: str


class _Error(msgspec.Struct):
    error: _ErrorDetail


_encode = msgspec.json.Encoder().encode

Callback = Callable[[Notification], Awaitable[object]]


class NotificationReceiver:
    """Answers Market's notification requests and runs ``callback`` per new event.

    Framework-free: give :meth:`handle` the request body, send back the
    answer's status and body (``application/json``). For aiohttp use
    :func:`add_notification_route` or :meth:`aiohttp_handler`.

    - Known chat events and unknown types are answered ``200`` at once; the
      callback runs afterwards in a background task (kept referenced, its
      exceptions logged on ``yamarket_chats.notifications``), so a slow
      callback never makes Market wait past its 10 s.
    - ``PING`` is answered ``200`` and not passed to the callback.
    - A repeated delivery (same chat/message/event, see :func:`dedup_key`)
      is answered ``200`` like the first (idempotent: Market only needs to
      know the event arrived) and never reaches the callback again; with
      ``reject_duplicates=True`` it gets ``400 DUPLICATED_EVENT`` instead.
    - A malformed body gets ``400 WRONG_EVENT_FORMAT`` and is not remembered.
    - If ``seen.add`` fails or takes over ``seen_timeout`` seconds the answer
      is ``500 UNKNOWN`` and the callback is not run: Market delivers again.

    Call :meth:`aclose` at shutdown to let running callbacks finish.
    """

    def __init__(
        self,
        callback: Callback,
        *,
        name: str,
        version: str,
        seen: SeenStore | None = None,
        reject_duplicates: bool = False,
        seen_timeout: float = 5.0,
    ) -> None:
        self.callback = callback
        self.name = name
        self.version = version
        self.seen: SeenStore = seen if seen is not None else MemorySeenStore()
        self.reject_duplicates = reject_duplicates
        self.seen_timeout = seen_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"NotificationReceiver(name={self.name!r}, pending={len(self._tasks)})"

    @property
    def pending(self) -> int:
        """Callbacks still running."""
        return len(self._tasks)

    def ok(self) -> bytes:
        """The success body: this app's version and name, and the time now."""
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        return _encode(_Ok(version=self.version, name=self.name, time=now))

    @staticmethod
    def error(kind: str, message: str) -> bytes:
        """An error body: ``{"error": {"type": kind, "message": message}}``."""
        return _encode(_Error(error=_ErrorDetail(type=kind, message=message)))

    async def handle(self, body: bytes | str) -> NotificationAnswer:
        """Answer one notification request; schedule the callback if the event is new."""
        try:
            event = decode_notification(body)
        except NotificationFormatError as exc:
            logger.warning("refused a notification: %s", exc)
            return NotificationAnswer(400, self.error("WRONG_EVENT_FORMAT", str(exc)), None)
        if isinstance(event, PingNotification):
            return NotificationAnswer(200, self.ok(), None)
        key = dedup_key(event)
        try:
            new = await asyncio.wait_for(self.seen.add(key), self.seen_timeout)
        except Exception as exc:
            logger.exception("seen-set failed for %s; answering UNKNOWN", key)
            # The store may have kept the key before failing or timing out;
            # forget it, or Market's redelivery would be dropped as a repeat.
            try:
                await asyncio.wait_for(self.seen.discard(key), self.seen_timeout)
            except Exception:
                logger.exception("could not forget %s in the seen-set", key)
            detail = "seen-set timed out" if isinstance(exc, asyncio.TimeoutError) else "internal"
            return NotificationAnswer(500, self.error("UNKNOWN", detail), None)
        if not new:
            logger.debug("dropped a repeated notification %s", key)
            if self.reject_duplicates:
                message = f"already received: {key}"
                return NotificationAnswer(400, self.error("DUPLICATED_EVENT", message), None)
            return NotificationAnswer(200, self.ok(), None)
        task = asyncio.get_running_loop().create_task(self._run(event, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return NotificationAnswer(200, self.ok(), event)

    async def _run(self, event: Notification, key: str) -> None:
        try:
            await self.callback(event)
        except Exception:
            logger.exception("notification callback failed for %s", key)

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Wait for running callbacks (up to ``timeout`` s), then cancel the rest."""
        tasks = set(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            logger.warning("cancelled %d notification callbacks at shutdown", len(late))
            await asyncio.wait(late)

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp.web handler: ``app.router.add_post("/notification", r.aiohttp_handler)``."""
        answer = await self.handle(await request.read())
        return web.Response(status=answer.status, body=answer.body, content_type=CONTENT_TYPE)


def add_notification_route(
    app: web.Application,
    path: str,
    callback: Callback,
    *,
    name: str,
    version: str,
    seen: SeenStore | None = None,
    reject_duplicates: bool = False,
) -> NotificationReceiver:
    """Receive notifications on ``POST path`` of an aiohttp app; return the receiver.

    Running callbacks are awaited when the app shuts down (``on_shutdown``,
    before ``on_cleanup`` closes what they may use).
    """
    receiver = NotificationReceiver(
        callback, name=name, version=version, seen=seen, reject_duplicates=reject_duplicates
    )
    app.router.add_post(path, receiver.aiohttp_handler)

    async def drain(_: web.Application) -> None:
        await receiver.aclose()

    app.on_shutdown.append(drain)
    return receiver


# -- fetching what an event is about -------------------------------------------


async def fetch_message(client: ChatsClient, event: ChatMessageSentNotification) -> ChatMessage:
    """The message a ``CHAT_MESSAGE_SENT`` is about, under the client's limits."""
    return await client.get_chat_message(event.business_id, event.chat_id, event.message_id)


async def fetch_chat(
    client: ChatsClient,
    event: ChatCreatedNotification
    | ChatMessageSentNotification
    | ChatArbitrageStartedNotification
    | ChatArbitrageFinishedNotification,
) -> Chat:
    """The chat a chat event is about, under the client's limits."""
    return await client.get_chat(event.business_id, event.chat_id)
