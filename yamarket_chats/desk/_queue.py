"""The reply-due queue: the chats waiting for the seller, oldest first, read from a sink.

A chat waits for the seller when its status is ``NEW`` or
``WAITING_FOR_PARTNER`` (the spec: "a shop's answer is needed"). The status
is the API's, as the last sync listed it: a reply takes the chat out of the
queue at the next sync, when the API has moved it to ``WAITING_FOR_CUSTOMER``.

How long it has waited is the one rule of this module (`_waiting_since`):
since the customer's first message after the seller's last one; failing
that, since the seller's last message (the status says an answer is due
again, e.g. Market asked for one); failing that, since the chat was created.
The query gathers those three times per chat (one index probe each, on the
messages' primary key) and Python applies the rule, so SQLite and PostgreSQL
share it. No API request is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from .._validate import positive_id
from ..errors import InvalidRequestError
from ..models import ChatMessagePayload
from ._reading import Source, run

__all__ = ["MAX_OLDER_THAN", "WAITING_STATUSES", "WaitingChat", "waiting_chats"]

#: The statuses in which a chat waits for the seller's answer.
WAITING_STATUSES: Final = ("NEW", "WAITING_FOR_PARTNER")
#: The longest ``older_than``: Market itself is younger than this.
MAX_OLDER_THAN: Final = dt.timedelta(days=36_500)


class WaitingChat(msgspec.Struct, frozen=True, kw_only=True):
    """One chat of the reply-due queue.

    ``waiting_since``: when the wait began (see `yamarket_chats.desk`).
    ``order_id``/``return_id``: the context's (``None`` for a DIRECT chat).
    ``last_message*``: the customer's last message (``None`` if the customer
    wrote nothing yet); ``last_message_files`` the names of its files. Encoded
    to JSON (``msgspec.json.encode``) with these names, times in ISO 8601.
    """

    business_id: int
    chat_id: int
    status: str
    waiting_since: dt.datetime
    type: str
    context_type: str
    order_id: int | None
    return_id: int | None
    customer_name: str | None
    last_message_id: int | None
    last_message_at: dt.datetime | None
    last_message: str | None
    last_message_files: tuple[str, ...] = ()

    def waited(self, now: dt.datetime | None = None) -> dt.timedelta:
        """How long the chat has waited at ``now`` (default: the current time)."""
        return (now or dt.datetime.now(dt.timezone.utc)) - self.waiting_since


# One row per waiting chat: the chat, then the seller's last message (`answered`),
# the customer's first one after it and the customer's last one (`last_asked`).
# Every message is found by a probe of the messages' primary key (scalar
# subqueries, never a join over the table), and the CTE is materialized so that
# each probe runs once per chat.
_BY_ID = (
    "(SELECT m.{column} FROM {s}messages m WHERE m.business_id = w.business_id"
    " AND m.chat_id = w.chat_id AND m.message_id = w.{which})"
)
_QUEUE = (
    """
WITH waiting AS MATERIALIZED (
    SELECT c.business_id, c.chat_id, c.status, c.type, c.created_at, c.context_type,
        c.context_order_id, c.return_id, c.customer_name,
        (SELECT m.message_id FROM {s}messages m
            WHERE m.business_id = c.business_id AND m.chat_id = c.chat_id
            AND m.sender = 'PARTNER' ORDER BY m.message_id DESC LIMIT 1) AS answered,
        (SELECT m.message_id FROM {s}messages m
            WHERE m.business_id = c.business_id AND m.chat_id = c.chat_id
            AND m.sender = 'CUSTOMER' ORDER BY m.message_id DESC LIMIT 1) AS last_asked
    FROM {s}chats c
    WHERE c.status IN ('NEW', 'WAITING_FOR_PARTNER') {businesses}
)
SELECT w.business_id, w.chat_id, w.status, w.type, w.created_at, w.context_type,
    w.context_order_id, w.return_id, w.customer_name, """
    + _BY_ID.format(column="created_at", which="answered", s="{s}")
    + """,
    (SELECT m.created_at FROM {s}messages m
        WHERE m.business_id = w.business_id AND m.chat_id = w.chat_id
        AND m.sender = 'CUSTOMER' AND m.message_id > coalesce(w.answered, -1)
        ORDER BY m.message_id LIMIT 1),
    w.last_asked, """
    + ", ".join(
        _BY_ID.format(column=column, which="last_asked", s="{s}")
        for column in ("created_at", "message", "payload")
    )
    + """
FROM waiting w
"""
)

_decode_files = msgspec.json.Decoder(list[ChatMessagePayload] | None).decode


def _time(value: Any) -> dt.datetime:
    """A stored time: SQLite keeps ISO 8601 text, PostgreSQL a ``timestamptz``."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _waiting_since(created: Any, answered: Any, asked: Any) -> dt.datetime:
    """The customer's first message after the seller's last, else that one, else the chat."""
    return _time(asked if asked is not None else answered if answered is not None else created)


def stored_files(payload: Any) -> list[ChatMessagePayload] | None:
    """A message's files as stored: JSON text (SQLite's, or asyncpg's for ``jsonb``)."""
    return _decode_files(payload) if isinstance(payload, (str, bytes)) else None


def _files(payload: Any) -> tuple[str, ...]:
    return tuple(f.name for f in stored_files(payload) or ())


def _row(row: Sequence[Any]) -> WaitingChat:
    (business_id, chat_id, status, type_, created, context_type, order_id, return_id,
     customer, answered, asked, last_id, last_at, last_text, last_payload) = row  # fmt: skip
    return WaitingChat(
        business_id=business_id,
        chat_id=chat_id,
        status=status,
        waiting_since=_waiting_since(created, answered, asked),
        type=type_,
        context_type=context_type,
        order_id=order_id,
        return_id=return_id,
        customer_name=customer,
        last_message_id=last_id,
        last_message_at=None if last_at is None else _time(last_at),
        last_message=last_text,
        last_message_files=_files(last_payload),
    )


def _older_than(value: dt.timedelta | float | None) -> dt.timedelta | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidRequestError(
            f"older_than must be seconds or a timedelta, got {type(value).__name__}"
        )
    if not 0 <= seconds <= MAX_OLDER_THAN.total_seconds():  # NaN too
        raise InvalidRequestError(
            f"older_than must be 0..{MAX_OLDER_THAN.total_seconds():.0f} seconds"
            f" ({MAX_OLDER_THAN.days} days), got {value!r}"
        )
    return dt.timedelta(seconds=seconds)


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if not isinstance(now, dt.datetime) or now.utcoffset() is None:
        raise InvalidRequestError(f"now must be an aware datetime (with a UTC offset), got {now!r}")
    return now


async def waiting_chats(
    source: Source,
    *,
    older_than: dt.timedelta | float | None = None,
    business_ids: Iterable[int] | None = None,
    now: dt.datetime | None = None,
) -> list[WaitingChat]:
    """The chats waiting for the seller's answer in ``source``, oldest ``waiting_since`` first.

    ``source``: a SQLite file's path (opened read-only, never locked: a sync
    may be writing it), an open `SQLiteSink`, or a `PostgresSink`; anything
    else (a `JsonlSink`) is an `InvalidRequestError`. ``older_than``: only
    chats that have waited at least this long (a `timedelta` or seconds) at
    ``now`` (default: the current time). ``business_ids``: only these
    businesses. Reads the sink only: no API request.
    """
    wait = _older_than(older_than)
    _now(now)  # checked before anything is read
    ids = None if business_ids is None else _business_ids(business_ids)
    if ids == []:
        return []
    clause = "" if ids is None else f"AND c.business_id IN ({', '.join(['{p}'] * len(ids))})"
    rows = await run(source, _QUEUE.replace("{businesses}", clause), ids or ())
    chats = sorted(map(_row, rows), key=lambda c: (c.waiting_since, c.business_id, c.chat_id))
    if wait is not None:
        cutoff = _now(now) - wait
        chats = [c for c in chats if c.waiting_since <= cutoff]
    return chats


def _business_ids(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, (str, bytes)):
        raise InvalidRequestError("business_ids must be a collection of ints, got a string")
    return sorted({positive_id("business_ids", b) for b in ids})
