"""Push notifications: typed chat events from Yandex Market, received in a web service.

Market ``POST``\\ s a JSON body to ``<the URL you register>/notification`` (the
notification spec's one path) when a chat is created, a message is sent, or a
dispute starts or finishes, and a ``PING`` to check the endpoint. Market signs
nothing, so the receiver keeps strangers out with a secret in the URL and an
allow-list of source addresses, and bounds what any request can cost::

    receiver = NotificationReceiver(on_event, name="my-shop", version="1.0", secret=SECRET)
    answer = await receiver.handle(body, secret=..., remote=..., content_type=...)  # any framework
    add_notification_route(app, "/{secret}/notification", on_event, ...)  # aiohttp
    fetcher = NotificationFetcher(client, business_ids={BUSINESS_ID})
    message = await fetcher.fetch_message(event)  # within its share of the quota
    receiver = NotificationReceiver(into_sink(sink, fetcher), ...)  # kept in a sink

Modules: ``_events`` (decoding to the spec), ``_seen`` (the seen-set),
``_guards`` (secret, allow-list), ``_options`` (the receiver's options, checked),
``_answers`` (the answers' JSON), ``_receiver`` (answers, callbacks),
``_aiohttp`` (the receiver in an aiohttp app), ``_fetch`` (fetching what an
event is about), ``_reserve`` (the fetcher's share of the client's quota, the
rest kept for your own calls), ``_store`` (events into a sink, checkpoints
untouched). See ``docs/notifications.md``.
"""

from ._aiohttp import add_notification_route
from ._answers import CONTENT_TYPE, NotificationAnswer
from ._events import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    ChatArbitrageFinishedNotification,
    ChatArbitrageStartedNotification,
    ChatCreatedNotification,
    ChatEvent,
    ChatMessageSentNotification,
    Notification,
    NotificationFormatError,
    PingNotification,
    UnknownNotification,
    business_of,
    decode_notification,
    dedup_key,
)
from ._fetch import (
    DEFAULT_FETCH_RATE,
    DEFAULT_FETCH_SHARE,
    FetchLimitError,
    NotificationFetcher,
    fetch_chat,
    fetch_message,
)
from ._guards import AllowHook, allow_networks
from ._options import DEFAULT_MAX_PENDING, Callback, ReceiverOptions
from ._receiver import NotificationReceiver
from ._seen import MemorySeenStore, SeenStore
from ._store import MessageStore, into_sink

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_FETCH_RATE",
    "DEFAULT_FETCH_SHARE",
    "DEFAULT_MAX_PENDING",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "AllowHook",
    "Callback",
    "ChatArbitrageFinishedNotification",
    "ChatArbitrageStartedNotification",
    "ChatCreatedNotification",
    "ChatEvent",
    "ChatMessageSentNotification",
    "FetchLimitError",
    "MemorySeenStore",
    "MessageStore",
    "Notification",
    "NotificationAnswer",
    "NotificationFetcher",
    "NotificationFormatError",
    "NotificationReceiver",
    "PingNotification",
    "ReceiverOptions",
    "SeenStore",
    "UnknownNotification",
    "add_notification_route",
    "allow_networks",
    "business_of",
    "decode_notification",
    "dedup_key",
    "fetch_chat",
    "fetch_message",
    "into_sink",
]
