"""Fetching what a chat event is about, without letting forged events spend the quota.

A notification carries ids, not content: the message itself takes a
``get_chat_message`` call, counted against the business's hourly quota. A
:class:`NotificationFetcher` refuses events for businesses it was not set up
for and caps the fetches per business with its own token bucket, separate
from (and below) the client's quota, refusing at once when it is spent instead
of queueing, so a flood of events cannot starve genuine work.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Final

from aiolimiter import AsyncLimiter

from ..client import ChatsClient
from ..errors import InvalidRequestError, YandexMarketError
from ..limits import RateLimit
from ..models import Chat, ChatMessage
from ._events import ChatEvent, ChatMessageSentNotification
from ._options import business_set

__all__ = [
    "DEFAULT_FETCH_RATE",
    "FetchLimitError",
    "NotificationFetcher",
    "fetch_chat",
    "fetch_message",
]

#: Fetches per business triggered by notifications: half the hourly quota of
#: ``get_chat``/``get_chat_message`` (1,000), with bursts of up to 50.
DEFAULT_FETCH_RATE: Final = RateLimit(500, 3600.0, burst=50)


class FetchLimitError(YandexMarketError):
    """A fetcher's cap for the business is spent; refused before any request."""

    def __init__(self, business_id: int, rate: RateLimit) -> None:
        super().__init__(
            f"business {business_id}: the notification fetch cap"
            f" ({rate.amount} per {rate.period_seconds:g} s) is spent; no request was sent"
        )
        self.business_id = business_id


def _message_id(event: ChatMessageSentNotification) -> int:
    message_id = event.message_id
    if message_id is None:
        raise InvalidRequestError(
            f"messageId {event.raw_message_id[:40]!r} of CHAT_MESSAGE_SENT is not an integer"
            " 1..2**63-1, which get_chat_message needs: cannot fetch this message"
        )
    return message_id


def _chat_id(event: ChatEvent) -> int:
    if event.chat_id < 1:
        raise InvalidRequestError(
            f"chatId {event.chat_id} of {event.notification_type} is below 1, the chat"
            " API's minimum: cannot fetch"
        )
    return event.chat_id


async def fetch_message(client: ChatsClient, event: ChatMessageSentNotification) -> ChatMessage:
    """The message a ``CHAT_MESSAGE_SENT`` is about, under the client's limits.

    No business check and no cap: behind a public endpoint use
    :meth:`NotificationFetcher.fetch_message`. Raises ``InvalidRequestError``
    (naming ``messageId``/``chatId``) when the ids cannot be fetched.
    """
    message_id = _message_id(event)
    return await client.get_chat_message(event.business_id, _chat_id(event), message_id)


async def fetch_chat(client: ChatsClient, event: ChatEvent) -> Chat:
    """The chat a chat event is about, under the client's limits (unguarded, as above)."""
    return await client.get_chat(event.business_id, _chat_id(event))


class NotificationFetcher:
    """Fetches the chat or message of an event for the configured businesses only.

    ``business_ids``: the businesses you receive notifications for; an event
    naming another is refused with ``InvalidRequestError`` (``businessId``).
    ``rate``: the fetches per business this fetcher may make
    (:data:`DEFAULT_FETCH_RATE`); past it :class:`FetchLimitError` is raised
    at once, or after waiting up to ``max_wait`` seconds for a token. Every
    check happens before a token is taken or a request sent.
    """

    def __init__(
        self,
        client: ChatsClient,
        *,
        business_ids: Iterable[int],
        rate: RateLimit = DEFAULT_FETCH_RATE,
        max_wait: float = 0.0,
    ) -> None:
        if not isinstance(rate, RateLimit):
            raise InvalidRequestError(f"rate must be a RateLimit, got {type(rate).__name__}")
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
            raise InvalidRequestError(f"max_wait must be seconds >= 0, got {max_wait!r}")
        if not 0 <= max_wait <= 600:
            raise InvalidRequestError(f"max_wait must be 0..600 seconds, got {max_wait!r}")
        ids = business_set("business_ids", business_ids)
        assert ids is not None
        self.client = client
        self.business_ids = ids
        self.rate = rate
        self.max_wait = float(max_wait)
        #: Fetches made and refused by the cap, per business id.
        self.fetched: collections.Counter[int] = collections.Counter()
        self.refused: collections.Counter[int] = collections.Counter()
        self._buckets: dict[int, AsyncLimiter] = {}

    def __repr__(self) -> str:
        return f"NotificationFetcher(business_ids={sorted(self.business_ids)}, rate={self.rate})"

    async def fetch_message(self, event: ChatMessageSentNotification) -> ChatMessage:
        """The message a ``CHAT_MESSAGE_SENT`` is about."""
        business_id = self._business(event)
        chat_id, message_id = _chat_id(event), _message_id(event)
        await self._take(business_id)
        return await self.client.get_chat_message(business_id, chat_id, message_id)

    async def fetch_chat(self, event: ChatEvent) -> Chat:
        """The chat any chat event is about."""
        business_id = self._business(event)
        chat_id = _chat_id(event)
        await self._take(business_id)
        return await self.client.get_chat(business_id, chat_id)

    def _business(self, event: ChatEvent) -> int:
        if event.business_id not in self.business_ids:
            raise InvalidRequestError(
                f"businessId {event.business_id} of {event.notification_type} is not one of"
                " this fetcher's business_ids: refused without a request"
            )
        return event.business_id

    async def _take(self, business_id: int) -> None:
        bucket = self._buckets.get(business_id)
        if bucket is None:
            bucket = self._buckets[business_id] = self.rate.new_limiter()
        if bucket.has_capacity():
            await bucket.acquire()
        elif self.max_wait > 0:
            # Not asyncio.wait_for: on Python 3.10/3.11 it returns a token that
            # came as its task was cancelled, and the cancelled fetch would go on.
            acquiring = asyncio.ensure_future(bucket.acquire())
            try:
                done, _ = await asyncio.wait((acquiring,), timeout=self.max_wait)
            except asyncio.CancelledError:
                acquiring.cancel()
                raise
            if not done:
                acquiring.cancel()
                self.refused[business_id] += 1
                raise FetchLimitError(business_id, self.rate)
        else:
            self.refused[business_id] += 1
            raise FetchLimitError(business_id, self.rate)
        self.fetched[business_id] += 1
