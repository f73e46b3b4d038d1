"""Fetching what a chat event is about, without letting forged events spend the quota.

A notification carries ids, not content: the message itself takes a
``get_chat_message`` call, counted against the business's quota of that
method, which the user's own calls spend too. A :class:`NotificationFetcher`
refuses events for businesses it was not set up for and, before each call,
takes a token of a sub-bucket of its own at ``share`` of the method's bucket
(``_reserve``), plus one of its overall ``rate`` cap per business. When either
is spent it refuses at once instead of queueing, so a flood of events can
never reach the rest of the bucket: the reserve of the user's own calls.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from aiolimiter import AsyncLimiter

from ..client import ChatsClient
from ..errors import InvalidRequestError, YandexMarketError
from ..limits import RateLimit
from ..models import Chat, ChatMessage
from ._events import ChatEvent, ChatMessageSentNotification
from ._options import business_set
from ._reserve import DEFAULT_FETCH_SHARE, check_share, share_limits

__all__ = [
    "DEFAULT_FETCH_RATE",
    "DEFAULT_FETCH_SHARE",
    "FetchLimitError",
    "NotificationFetcher",
    "fetch_chat",
    "fetch_message",
]

#: The overall cap per business over both fetch methods together (each is
#: also held to its ``share`` of the client's bucket, which is what keeps the
#: reserve): 500 an hour, half the hourly quota of ``get_chat`` or ``get_chat_message``.
DEFAULT_FETCH_RATE: Final = RateLimit(500, 3600.0, burst=50)

# A bucket, its rate, and the method whose share it is (None: the overall cap).
_Gate = tuple[AsyncLimiter, RateLimit, str | None]


class FetchLimitError(YandexMarketError):
    """A fetcher's cap for the business is spent; refused before any request.

    ``method`` names the client method whose share of the bucket is spent, or
    is ``None`` when the fetcher's overall ``rate`` cap is.
    """

    def __init__(self, business_id: int, rate: RateLimit, *, method: str | None = None) -> None:
        what = (
            f" ({rate.amount} per {rate.period_seconds:g} s)"
            if method is None
            else f" of {method} ({rate.amount} per {rate.period_seconds:g} s,"
            f" burst {rate.effective_burst}: its share of the client's bucket)"
        )
        super().__init__(
            f"business {business_id}: the notification fetch cap{what} is spent;"
            " no request was sent"
        )
        self.business_id = business_id
        self.method = method
        self.rate = rate


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
    ``share``: the part of the client's bucket of each method (its rate and
    its burst, per business) the fetcher may draw, greater than 0 and less
    than 1 (:data:`DEFAULT_FETCH_SHARE`, a half); the rest is the reserve of
    your own calls. ``rate``: an overall cap per business over both methods
    (:data:`DEFAULT_FETCH_RATE`; ``None``: none). Past either,
    :class:`FetchLimitError` is raised at once, or after waiting up to
    ``max_wait`` seconds for a token. Every check happens before a token is
    taken or a request sent.
    """

    def __init__(
        self,
        client: ChatsClient,
        *,
        business_ids: Iterable[int],
        rate: RateLimit | None = DEFAULT_FETCH_RATE,
        share: float = DEFAULT_FETCH_SHARE,
        max_wait: float = 0.0,
    ) -> None:
        if rate is not None and not isinstance(rate, RateLimit):
            raise InvalidRequestError(
                f"rate must be a RateLimit or None, got {type(rate).__name__}"
            )
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
            raise InvalidRequestError(f"max_wait must be seconds >= 0, got {max_wait!r}")
        if not 0 <= max_wait <= 600:
            raise InvalidRequestError(f"max_wait must be 0..600 seconds, got {max_wait!r}")
        ids = business_set("business_ids", business_ids)
        assert ids is not None
        self.client = client
        self.business_ids = ids
        self.rate = rate
        self.share = check_share(share)
        #: The sub-bucket (per business) of each client method the fetcher
        #: calls: ``share`` of the client's limit for it.
        self.limits: Mapping[str, RateLimit] = MappingProxyType(share_limits(client, self.share))
        self.max_wait = float(max_wait)
        #: Fetches made and refused by the caps, per business id.
        self.fetched: collections.Counter[int] = collections.Counter()
        self.refused: collections.Counter[int] = collections.Counter()
        self._buckets: dict[int, AsyncLimiter] = {}
        self._shares: dict[tuple[int, str], AsyncLimiter] = {}

    def __repr__(self) -> str:
        return (
            f"NotificationFetcher(business_ids={sorted(self.business_ids)},"
            f" share={self.share:g}, rate={self.rate})"
        )

    async def fetch_message(self, event: ChatMessageSentNotification) -> ChatMessage:
        """The message a ``CHAT_MESSAGE_SENT`` is about."""
        business_id = self._business(event)
        chat_id, message_id = _chat_id(event), _message_id(event)
        await self._take(business_id, "get_chat_message")
        return await self.client.get_chat_message(business_id, chat_id, message_id)

    async def fetch_chat(self, event: ChatEvent) -> Chat:
        """The chat any chat event is about."""
        business_id = self._business(event)
        chat_id = _chat_id(event)
        await self._take(business_id, "get_chat")
        return await self.client.get_chat(business_id, chat_id)

    def _business(self, event: ChatEvent) -> int:
        if event.business_id not in self.business_ids:
            raise InvalidRequestError(
                f"businessId {event.business_id} of {event.notification_type} is not one of"
                " this fetcher's business_ids: refused without a request"
            )
        return event.business_id

    async def _take(self, business_id: int, method: str) -> None:
        """A token of the method's share and of the overall cap, or FetchLimitError."""
        spent = await self._acquire(self._gates(business_id, method))
        if spent is not None:
            self.refused[business_id] += 1
            _, rate, share_method = spent
            raise FetchLimitError(business_id, rate, method=share_method)
        self.fetched[business_id] += 1

    def _gates(self, business_id: int, method: str) -> list[_Gate]:
        """The buckets a fetch of ``method`` for ``business_id`` takes a token of."""
        limit = self.limits[method]
        share = self._shares.get((business_id, method))
        if share is None:
            share = self._shares[business_id, method] = limit.new_limiter()
        gates: list[_Gate] = [(share, limit, method)]
        if self.rate is not None:
            bucket = self._buckets.get(business_id)
            if bucket is None:
                bucket = self._buckets[business_id] = self.rate.new_limiter()
            gates.append((bucket, self.rate, None))
        return gates

    async def _acquire(self, gates: list[_Gate]) -> _Gate | None:
        """Take a token of every gate; return the one that is spent, if any.

        Without ``max_wait``, all or none. With it, the spent gates are
        waited for first; a token taken of one gate while another then runs
        out of time is lost to the fetcher (never to the reserve).
        """
        lacking = [gate for gate in gates if not gate[0].has_capacity()]
        if not lacking:
            for bucket, _, _ in gates:
                await bucket.acquire()  # it has the capacity: no wait, no other task between
            return None
        if self.max_wait <= 0:
            return lacking[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        for gate in [*lacking, *(gate for gate in gates if gate not in lacking)]:
            if not await _within(gate[0], deadline - loop.time()):
                return gate
        return None


async def _within(bucket: AsyncLimiter, timeout: float) -> bool:
    """Take a token of ``bucket`` if it has one within ``timeout`` seconds."""
    if bucket.has_capacity():
        await bucket.acquire()
        return True
    if timeout <= 0:
        return False
    # Not asyncio.wait_for: on Python 3.10/3.11 it returns a token that came
    # as its task was cancelled, and the cancelled fetch would go on.
    acquiring = asyncio.ensure_future(bucket.acquire())
    try:
        await asyncio.wait((acquiring,), timeout=timeout)
    except asyncio.CancelledError:
        acquiring.cancel()
        raise
    if acquiring.done():
        acquiring.result()
        return True
    acquiring.cancel()
    return False
