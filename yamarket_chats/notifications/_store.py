"""Notifications into a sink: each chat event's chat or message, stored as it arrives.

`into_sink` makes the receiver's callback: a ``CHAT_MESSAGE_SENT`` stores
the message and then the chat, every other chat event (created, dispute
started or finished) the chat. The chat's status has moved, and the
reply-due queue of `yamarket_chats.desk` follows within seconds.
Both are fetched through a `NotificationFetcher`, so a flood of events stays
within its share of the quota.

The one rule: a notification never moves a sync's checkpoint. The message
is stored with the sink's ``save_messages``, which leaves the chat's
``sync_state`` as it is, and a chat with ``save_chats``, which the sync's
skip rule does not read. So the next sync walks from its own last message
and stores everything it would have stored, the notified message again (an
upsert of the same row: never a duplicate). A process killed between the
two writes, or before either, loses nothing the sync will not fetch.
JSON Lines, whose file *is* its checkpoint, cannot take a message alone and
is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import InvalidRequestError
from ..models import Chat, ChatMessage
from ._events import (
    ChatArbitrageFinishedNotification,
    ChatArbitrageStartedNotification,
    ChatCreatedNotification,
    ChatEvent,
    ChatMessageSentNotification,
    Notification,
)
from ._fetch import FetchLimitError, NotificationFetcher
from ._options import Callback

__all__ = ["MessageStore", "into_sink"]

logger = logging.getLogger("yamarket_chats.notifications")

_CHAT_EVENTS = (
    ChatCreatedNotification,
    ChatMessageSentNotification,
    ChatArbitrageStartedNotification,
    ChatArbitrageFinishedNotification,
)


@runtime_checkable
class MessageStore(Protocol):
    """A sink that can store a message without moving its checkpoint (SQLite, PostgreSQL)."""

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        """Insert or update chats."""
        ...

    async def save_messages(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage]
    ) -> None:
        """Insert or update messages, the chat's checkpoint untouched."""
        ...


def into_sink(
    sink: MessageStore, fetcher: NotificationFetcher, *, then: Callback | None = None
) -> Callback:
    """The receiver's callback storing each chat event in ``sink``, then calling ``then``.

    ``sink``: a `SQLiteSink` or `PostgresSink` (a `JsonlSink` is refused with
    `InvalidRequestError`). ``fetcher``: fetches the chat or message within
    its caps; when a cap is spent the event is left to the next sync (one
    WARNING line) and the rest of the callback goes on. ``then``: your own
    callback, called with every event after it is stored (or left).
    """
    if not isinstance(sink, MessageStore):
        raise InvalidRequestError(
            f"sink must store a message without moving its checkpoint (save_messages: a"
            f" SQLiteSink or a PostgresSink); a {type(sink).__name__} cannot"
        )
    if then is not None and not callable(then):
        raise InvalidRequestError("then must be an async callable taking the event")

    async def store(event: Notification) -> None:
        if isinstance(event, _CHAT_EVENTS):
            await _store(sink, fetcher, event)
        if then is not None:
            await then(event)

    return store


async def _store(sink: MessageStore, fetcher: NotificationFetcher, event: ChatEvent) -> None:
    business_id, chat_id = event.business_id, event.chat_id
    try:
        if isinstance(event, ChatMessageSentNotification):
            message = await fetcher.fetch_message(event)
            await sink.save_messages(business_id, chat_id, [message])
        chat = await fetcher.fetch_chat(event)
    except FetchLimitError as exc:
        logger.warning("%s; chat %s is left to the next sync", exc, chat_id)
        return
    await sink.save_chats(business_id, [chat])
