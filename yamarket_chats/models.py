"""Typed models of the chat methods: msgspec structs with snake_case attributes.

Field names follow the official spec (camelCase on the wire). Enum-typed fields
hold the wire string: the enums below are `str` enums whose members compare
equal to it (``chat.status == ChatStatus.FINISHED``), and a value the API adds
later comes through as it is instead of breaking decoding.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Generic, TypeVar

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
