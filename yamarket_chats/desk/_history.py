"""One chat as a support desk reads it: the sink's copy, completed through the client.

The sink holds what the last sync (or a notification) stored. What came
since is fetched through the client, from the message after the last one
stored (``message_id_from``), under the client's limits; nothing is written
back (the desk never moves a sync's checkpoints). Only the last ``limit``
messages are kept while paging, so a long chat costs no more memory than a
short one. A chat the sink lacks is read from the API whole, with `get_chat`
for its status.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._validate import positive_id
from ..errors import InvalidRequestError
from ..models import ChatMessage
from ._queue import _time, stored_files
from ._reading import Source, run

if TYPE_CHECKING:
    from ..client import ChatsClient

__all__ = ["DEFAULT_READ_LIMIT", "MAX_READ_LIMIT", "ChatView", "read_chat"]

#: Messages `read_chat` returns by default (the last ones) ...
DEFAULT_READ_LIMIT: Final = 50
#: ... and at most.
MAX_READ_LIMIT: Final = 500


class ChatView(msgspec.Struct, frozen=True, kw_only=True):
    """A chat and its last messages, oldest first.

    ``status``: the API's, as the sink last stored it (or as `get_chat` gave
    it, when the sink lacks the chat). ``stored``/``fetched``: how many of
    ``messages`` came from the sink and from the API; ``earlier``: whether
    older messages exist beyond ``messages``.
    """

    business_id: int
    chat_id: int
    status: str
    type: str
    context_type: str
    order_id: int | None
    return_id: int | None
    customer_name: str | None
    created_at: dt.datetime
    messages: list[ChatMessage]
    stored: int
    fetched: int
    earlier: bool


_CHAT = """
SELECT status, type, context_type, context_order_id, return_id, customer_name, created_at
FROM {s}chats WHERE business_id = {p} AND chat_id = {p}
"""
_CHECKPOINT = """
SELECT last_message_id FROM {s}sync_state WHERE business_id = {p} AND chat_id = {p}
"""
_LAST_MESSAGES = """
SELECT message_id, created_at, sender, message, payload FROM {s}messages
WHERE business_id = {p} AND chat_id = {p} ORDER BY message_id DESC LIMIT {p}
"""


def _message(row: Sequence[Any]) -> ChatMessage:
    message_id, created, sender, text, payload = row
    return ChatMessage(
        message_id=message_id, created_at=_time(created), sender=sender, message=text,
        payload=stored_files(payload),
    )  # fmt: skip


def _limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_READ_LIMIT:
        raise InvalidRequestError(f"limit must be an integer 1..{MAX_READ_LIMIT}, got {limit!r}")
    return limit


async def _fetched(
    client: ChatsClient, business_id: int, chat_id: int, after: int | None, limit: int
) -> tuple[list[ChatMessage], bool]:
    """The last ``limit`` messages after ``after`` (all, if ``None``), and whether some fell out."""
    kept: collections.deque[ChatMessage] = collections.deque(maxlen=limit)
    seen = 0
    start = None if after is None else after + 1
    async for page in client.iter_chat_history(business_id, chat_id, message_id_from=start).pages():
        for message in page.messages:
            if after is None or message.message_id > after:  # the API starts at >= start
                kept.append(message)
                seen += 1
    return list(kept), seen > limit


async def _chat_of(
    client: ChatsClient, business_id: int, chat_id: int, row: Sequence[Any] | None
) -> tuple[Any, ...]:
    """status, type, context type, order, return, customer, created: the sink's, else the API's."""
    if row is not None:
        return (*row[:6], _time(row[6]))
    chat = await client.get_chat(business_id, chat_id)
    context = chat.context
    customer = context.customer.name if context.customer else None
    return (chat.status, chat.type, context.type, context.order_id, context.return_id, customer,
            chat.created_at)  # fmt: skip


async def read_chat(
    source: Source,
    client: ChatsClient,
    business_id: int,
    chat_id: int,
    *,
    limit: int = DEFAULT_READ_LIMIT,
) -> ChatView:
    """The chat and its last ``limit`` messages: the sink's, completed by the API's.

    Reads ``source`` (as `waiting_chats` does), then pages the history through
    ``client`` from the sync's checkpoint of the chat on (one request when the
    sink is current). Not from the last message stored: a notification may
    have stored one past messages the sink lacks. Raises the client's errors
    (`NotFoundError` for a chat that does not exist) and `InvalidRequestError`
    for bad arguments.
    """
    business_id = positive_id("business_id", business_id)
    chat_id = positive_id("chat_id", chat_id)
    limit = _limit(limit)
    key = (business_id, chat_id)
    chats = await run(source, _CHAT, key)
    checkpoint = await run(source, _CHECKPOINT, key)
    rows = await run(source, _LAST_MESSAGES, (*key, limit + 1))
    stored = {m.message_id: m for m in map(_message, rows)}
    after = checkpoint[0][0] if checkpoint else None
    fetched, dropped = await _fetched(client, business_id, chat_id, after, limit)
    merged = {**stored, **{m.message_id: m for m in fetched}}
    messages = [merged[i] for i in sorted(merged)[-limit:]]
    status, type_, context_type, order_id, return_id, customer, created_at = await _chat_of(
        client, business_id, chat_id, chats[0] if chats else None
    )
    new = sum(1 for m in messages if m.message_id not in stored)
    return ChatView(
        business_id=business_id,
        chat_id=chat_id,
        status=status,
        type=type_,
        context_type=context_type,
        order_id=order_id,
        return_id=return_id,
        customer_name=customer,
        created_at=created_at,
        messages=messages,
        stored=len(messages) - new,
        fetched=new,
        earlier=len(merged) > limit or dropped,
    )
