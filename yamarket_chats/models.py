"""Typed models of the chat methods: msgspec structs with snake_case attributes.

Field names follow the official spec (camelCase on the wire). Enum-typed fields
hold the wire string: the enums below are `str` enums whose members compare
equal to it (``chat.status == ChatStatus.FINISHED``), and a value the API adds
later comes through as it is instead of breaking decoding.

Timestamps (the spec's ``date-time`` fields) decode to aware `datetime`
objects keeping the server's UTC offset. Two forms msgspec refuses are read
too (`_decode_answer`, only once msgspec has refused an answer, so a page of
ordinary timestamps costs nothing more):

- a leap second, ``2026-06-30T23:59:60Z``, is clamped to the last microsecond
  of its minute, ``23:59:59.999999`` (any fraction of the leap second
  likewise): the date stays the server's, and the order of timestamps is kept
  (never later than the second that follows, never earlier than the one before);
- a time without seconds, ``2026-12-07T10:15+03:00``, is read as ``10:15:00``.

Anything else that does not fit the spec is an error naming the field.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from typing import Any, Final, Generic, TypeAlias, TypeVar

import msgspec

__all__ = [
    "ApiErrorDetail",
    "Chat",
    "ChatContext",
    "ChatContextIdentifiableType",
    "ChatContextType",
    "ChatCustomer",
    "ChatFullContext",
    "ChatHistoryPage",
    "ChatMessage",
    "ChatMessagePayload",
    "ChatStatus",
    "ChatType",
    "ChatsPage",
    "CreateChatResult",
    "MessageSender",
    "Paging",
]


class _StrEnum(str, enum.Enum):
    """A string enum whose members compare equal to their wire value."""

    def __str__(self) -> str:
        return str(self.value)


class ChatType(_StrEnum):
    """Kind of chat: with a buyer, or a dispute (arbitrage)."""

    CHAT = "CHAT"
    ARBITRAGE = "ARBITRAGE"


class ChatStatus(_StrEnum):
    """Who the chat waits for, or that it is finished."""

    NEW = "NEW"
    WAITING_FOR_CUSTOMER = "WAITING_FOR_CUSTOMER"
    WAITING_FOR_PARTNER = "WAITING_FOR_PARTNER"
    WAITING_FOR_ARBITER = "WAITING_FOR_ARBITER"
    WAITING_FOR_MARKET = "WAITING_FOR_MARKET"
    FINISHED = "FINISHED"


class ChatContextType(_StrEnum):
    """What a chat is about: an order, a return, or a buyer-started chat."""

    ORDER = "ORDER"
    RETURN = "RETURN"
    DIRECT = "DIRECT"


class ChatContextIdentifiableType(_StrEnum):
    """Context kinds a seller can start a chat for or filter by id."""

    ORDER = "ORDER"
    RETURN = "RETURN"


class MessageSender(_StrEnum):
    """Who sent a message."""

    PARTNER = "PARTNER"
    CUSTOMER = "CUSTOMER"
    MARKET = "MARKET"
    SUPPORT = "SUPPORT"


# gc=False: models never reference their parents, so they cannot form cycles,
# and keeping a million decoded messages out of the cyclic GC saves real time.
class _Model(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True, gc=False):
    """Base of every model: camelCase on the wire, absent optionals omitted."""


class ChatCustomer(_Model):
    """The buyer of a chat (public Yandex ID data)."""

    name: str | None = None
    public_id: str | None = None


class ChatContext(_Model, kw_only=False):
    """An order or a return, as given to `create_chat` and the chat filters."""

    type: str  #: a `ChatContextIdentifiableType` value
    id: int


class ChatFullContext(_Model):
    """The order or return a chat was started for."""

    type: str  #: a `ChatContextType` value
    customer: ChatCustomer | None = None
    campaign_id: int | None = None
    order_id: int | None = None
    return_id: int | None = None


class Chat(_Model):
    """A chat with a buyer."""

    chat_id: int
    context: ChatFullContext
    type: str  #: a `ChatType` value
    status: str  #: a `ChatStatus` value
    created_at: dt.datetime
    updated_at: dt.datetime
    order_id: int | None = None


class ChatMessagePayload(_Model):
    """A file attached to a message."""

    name: str
    url: str
    size: int


class ChatMessage(_Model):
    """One message of a chat: text, files, or both."""

    message_id: int
    created_at: dt.datetime
    sender: str  #: a `MessageSender` value
    message: str | None = None
    payload: list[ChatMessagePayload] | None = None


class Paging(_Model):
    """Forward paging: `next_page_token` is absent on the last page."""

    next_page_token: str | None = None


class ChatsPage(_Model):
    """One page of `get_chats`."""

    chats: list[Chat]
    paging: Paging | None = None


class ChatHistoryPage(_Model):
    """One page of `get_chat_history`."""

    context: ChatFullContext
    messages: list[ChatMessage]
    paging: Paging | None = None
    order_id: int | None = None


class CreateChatResult(_Model):
    """The chat created by `create_chat`, or the one that already existed."""

    chat_id: int


class ApiErrorDetail(_Model):
    """One entry of the `errors` list of an error answer."""

    code: str
    message: str | None = None


# --- wire envelopes and request bodies (private) ---------------------------

T = TypeVar("T")


class _Envelope(msgspec.Struct, Generic[T]):
    status: str
    result: T | None = None
    errors: list[ApiErrorDetail] | None = None


class _ErrorEnvelope(msgspec.Struct):
    status: str | None = None
    errors: list[ApiErrorDetail] | None = None


class _CreateChatBody(_Model):
    order_id: int | None = None
    context: ChatContext | None = None


class _ChatsFilter(_Model):
    order_ids: list[int] | None = None
    contexts: list[ChatContext] | None = None
    context_types: list[str] | None = None
    types: list[str] | None = None
    statuses: list[str] | None = None


class _HistoryBody(_Model):
    message_id_from: int | None = None


class _MessageBody(_Model):
    message: str


# --- decoding answers -------------------------------------------------------

# A timestamp msgspec refuses that can be read: a leap second (``:60``, any
# fraction) or no seconds at all, with an offset as RFC 3339 requires.
_ODD_TIME: Final = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d)(:60(?:\.\d{1,9})?)?([Zz]|[+-]\d\d:\d\d)"
)

# Where a type holds timestamps: True (a timestamp), a dict of wire field name
# to what that field holds, or a one-item list (what each item of a list holds).
_TimeFields: TypeAlias = "bool | dict[str, _TimeFields] | list[_TimeFields]"


def _decode_answer(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    """Decode an answer; on a timestamp msgspec refuses, read it as the module docstring says.

    The first try is msgspec's own, so ordinary answers take no other path.
    Raises msgspec's error, naming the field, when the answer still does not fit.
    """
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError:
        kind: Any = decoder.type
        fields = _time_fields(kind)
        if fields is False:
            raise
    # Again from plain JSON data, its odd timestamps rewritten; what still does
    # not fit raises with its own path (not the path of a timestamp now read).
    result: T = msgspec.convert(_repair(msgspec.json.decode(raw), fields), kind)
    return result


def _repair(value: Any, fields: _TimeFields) -> Any:
    """`value` (plain JSON data) with the timestamps `fields` points at rewritten."""
    if fields is True:
        return _repair_time(value) if isinstance(value, str) else value
    if isinstance(fields, dict) and isinstance(value, dict):
        for name, inner in fields.items():
            if name in value:
                value[name] = _repair(value[name], inner)
    elif isinstance(fields, list) and isinstance(value, list):
        return [_repair(item, fields[0]) for item in value]
    return value


def _repair_time(text: str) -> str:
    """A leap second clamped to ``:59.999999``, missing seconds as ``:00``; else `text`."""
    odd = _ODD_TIME.fullmatch(text)
    if odd is None:
        return text
    day_and_minute, leap, offset = odd.groups()
    return f"{day_and_minute}{':59.999999' if leap else ':00'}{offset}"


@functools.cache
def _time_fields(kind: Any) -> _TimeFields:
    """Where `kind` (a model, or an envelope of one) holds timestamps; False: nowhere."""
    import msgspec.inspect  # the slow path only: not loaded by ordinary decoding

    return _where(msgspec.inspect.type_info(kind))


def _where(info: Any) -> _TimeFields:
    """`_time_fields` of a `msgspec.inspect` type."""
    import msgspec.inspect as mi

    if isinstance(info, mi.DateTimeType):
        return True
    if isinstance(info, mi.StructType):
        fields = {f.encode_name: _where(f.type) for f in info.fields}
        return {name: inner for name, inner in fields.items() if inner is not False} or False
    if isinstance(info, (mi.ListType, mi.VarTupleType)):
        item = _where(info.item_type)
        return [item] if item is not False else False
    if isinstance(info, mi.UnionType):  # `Paging | None`, or a tagged union of models
        found = [w for w in map(_where, info.types) if w is not False]
        models = [w for w in found if isinstance(w, dict)]
        if models and len(models) == len(found):
            merged: dict[str, _TimeFields] = {}
            for member in models:  # each model's fields: a field only it has is its own
                merged.update(member)
            return merged
        return found[0] if found else False
    return False
