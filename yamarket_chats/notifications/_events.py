"""The notification events, decoded to the letter of Market's notification spec.

Field names and types follow Market's notification API spec (its
``*NotificationDTO`` schemas; a copy is in ``tests/spec/notification-api/``):
ids are JSON integers (``businessId`` >= 1,
other ids any int64), ``messageId`` is a JSON string, times are ISO 8601
strings with an offset. Anything else is a :class:`NotificationFormatError`,
answered ``400 WRONG_EVENT_FORMAT``. Bodies are bounded in size and nesting
before and after decoding, so a hostile body costs little and never raises
anything but that error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Annotated, Any, Final, TypeAlias

import msgspec

from .._ids import INT64_MAX
from ..errors import YandexMarketError
from ..models import _decode_answer

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "ChatArbitrageFinishedNotification",
    "ChatArbitrageStartedNotification",
    "ChatCreatedNotification",
    "ChatEvent",
    "ChatMessageSentNotification",
    "Notification",
    "NotificationFormatError",
    "PingNotification",
    "UnknownNotification",
    "business_of",
    "decode_notification",
    "dedup_key",
]

#: Default bound on a body, in bytes. The chat events and PING are under 300
#: bytes; only an order notification listing hundreds of items comes near it.
MAX_BODY_BYTES: Final = 64 * 1024
#: Deepest JSON nesting accepted. The spec's events nest at most 3 levels.
MAX_DEPTH: Final = 32

# The spec's `integer, format: int64`, with its `minimum` where it has one.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=INT64_MAX)]
_BusinessId = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
# `format: date-time` (RFC 3339): an offset is required, a naive time refused.
_Time = Annotated[dt.datetime, msgspec.Meta(tz=True)]
_DECIMAL_ID: Final = re.compile(r"[0-9]{1,19}")
# Body strings longer than this go into a dedup key as their digest.
_SHORT_TEXT: Final = 64


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
    """Market checking the endpoint; answered by the receiver, not passed on.

    ``time`` is optional in the spec (``PingNotificationDTO`` requires nothing).
    """

    time: _Time | None = None


class ChatCreatedNotification(_Known, tag="CHAT_CREATED", frozen=True):
    """``CHAT_CREATED``: a chat was created (fetch it with ``fetch_chat``)."""

    chat_id: _Int64
    business_id: _BusinessId
    created_at: _Time


class ChatMessageSentNotification(_Known, tag="CHAT_MESSAGE_SENT", frozen=True):
    """``CHAT_MESSAGE_SENT``: a message was sent to a chat (fetch it with ``fetch_message``).

    The spec types ``messageId`` as a string while the chat API takes an
    integer: ``raw_message_id`` is the string as sent, ``message_id`` its
    integer value, or ``None`` when it is not one the chat API could take.
    """

    chat_id: _Int64
    raw_message_id: str = msgspec.field(name="messageId")
    business_id: _BusinessId
    sent_at: _Time

    @property
    def message_id(self) -> int | None:
        """``messageId`` as the chat API's int64 >= 1, or ``None`` if it is not one."""
        raw = self.raw_message_id
        if _DECIMAL_ID.fullmatch(raw) is None:
            return None
        value = int(raw)
        return value if 1 <= value <= INT64_MAX else None


class ChatArbitrageStartedNotification(_Known, tag="CHAT_ARBITRAGE_STARTED", frozen=True):
    """``CHAT_ARBITRAGE_STARTED``: a dispute was opened in a chat."""

    chat_id: _Int64
    business_id: _BusinessId
    started_at: _Time


class ChatArbitrageFinishedNotification(_Known, tag="CHAT_ARBITRAGE_FINISHED", frozen=True):
    """``CHAT_ARBITRAGE_FINISHED``: a dispute in a chat was closed."""

    chat_id: _Int64
    business_id: _BusinessId
    finished_at: _Time


class UnknownNotification(msgspec.Struct, frozen=True):
    """A notification type this library does not decode (orders, reviews, later ones).

    ``raw`` is the whole decoded body, ``notificationType`` included.
    """

    notification_type: str
    raw: dict[str, Any]


#: The chat events: each has ``business_id`` and ``chat_id``.
ChatEvent: TypeAlias = (
    ChatCreatedNotification
    | ChatMessageSentNotification
    | ChatArbitrageStartedNotification
    | ChatArbitrageFinishedNotification
)
_KnownNotification: TypeAlias = PingNotification | ChatEvent
#: What :func:`decode_notification` returns; callbacks get all but `PingNotification`.
Notification: TypeAlias = PingNotification | ChatEvent | UnknownNotification

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
_known_decoder: Final = msgspec.json.Decoder(_KnownNotification)


def _too_deep(value: object, limit: int) -> bool:
    """True if ``value`` nests containers deeper than ``limit`` (iterative, no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_notification(body: bytes | str, *, max_bytes: int = MAX_BODY_BYTES) -> Notification:
    """Decode a notification body; unknown types come back as :class:`UnknownNotification`.

    Raises :class:`NotificationFormatError` for a body over ``max_bytes``,
    nested deeper than :data:`MAX_DEPTH`, that is not a JSON object with a
    string ``notificationType``, or a known type whose fields break the spec.
    """
    if isinstance(body, str):
        # At least one byte per character: measure before encoding.
        if len(body) > max_bytes:
            raise NotificationFormatError(
                f"body is {len(body)} characters, over the limit of {max_bytes} bytes"
            )
        try:
            body = body.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
            raise NotificationFormatError(
                f"body is not UTF-8 text: {exc.reason} at character {exc.start}"
            ) from None
    if len(body) > max_bytes:
        raise NotificationFormatError(
            f"body is {len(body)} bytes, over the limit of {max_bytes} bytes"
        )
    try:
        raw = _object_decoder.decode(body)
    except RecursionError:
        raise NotificationFormatError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise NotificationFormatError(f"not a JSON object: {exc}") from None
    if _too_deep(raw, MAX_DEPTH):
        raise NotificationFormatError(f"JSON nested deeper than {MAX_DEPTH} levels")
    kind = raw.get("notificationType")
    if not isinstance(kind, str) or not kind:
        raise NotificationFormatError("`notificationType` is missing or not a string")
    if kind not in _KNOWN_TAGS:
        return UnknownNotification(kind, raw)
    try:
        event: Notification = _decode_answer(_known_decoder, body)  # leap seconds too
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise NotificationFormatError(f"{kind}: {exc}") from None
    return event


def business_of(event: Notification) -> int | None:
    """The business an event names (``businessId``), or ``None`` (PING, orders)."""
    if isinstance(event, UnknownNotification):
        value = event.raw.get("businessId")
        return value if type(value) is int else None
    return getattr(event, "business_id", None)


def _short(text: str) -> str:
    """``text`` itself when short printable ASCII, else a fixed-size digest of it.

    Strings from the body (``messageId``, ``notificationType``) have no length
    bound in the spec; a key must not grow with them, or the seen-set's
    memory would be bounded by key count only. ASCII keeps a key at one byte
    per character (and its log lines on one line). A digest (71 characters)
    is longer than any kept text, so the two forms never collide.
    """
    if len(text) <= _SHORT_TEXT and text.isascii() and text.isprintable():
        return text
    return "sha256=" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def dedup_key(event: Notification) -> str:
    """The key a repeated delivery of ``event`` shares with the first one.

    At most a few hundred bytes whatever the body holds: long strings are
    replaced by their SHA-256 digest.
    """
    if isinstance(event, ChatMessageSentNotification):
        message = _short(event.raw_message_id)
        return f"CHAT_MESSAGE_SENT:{event.business_id}:{event.chat_id}:{message}"
    if isinstance(event, ChatCreatedNotification):
        return f"CHAT_CREATED:{event.business_id}:{event.chat_id}"
    if isinstance(event, ChatArbitrageStartedNotification):
        stamp = event.started_at.timestamp()
        return f"CHAT_ARBITRAGE_STARTED:{event.business_id}:{event.chat_id}:{stamp}"
    if isinstance(event, ChatArbitrageFinishedNotification):
        stamp = event.finished_at.timestamp()
        return f"CHAT_ARBITRAGE_FINISHED:{event.business_id}:{event.chat_id}:{stamp}"
    if isinstance(event, PingNotification):
        return f"PING:{event.time.timestamp() if event.time else ''}"
    canonical = msgspec.json.encode(event.raw, order="sorted")
    return f"{_short(event.notification_type)}:{hashlib.sha256(canonical).hexdigest()}"
