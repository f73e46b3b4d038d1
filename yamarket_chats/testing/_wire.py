"""Wire format: msgspec structs for the JSON the fake reads and writes.

Field names follow the spec (camelCase); absent optionals are omitted.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import msgspec

MSK = timezone(timedelta(hours=3))

ContextKind = Literal["ORDER", "RETURN"]
ContextType = Literal["ORDER", "RETURN", "DIRECT"]
ChatType = Literal["CHAT", "ARBITRAGE"]
ChatStatus = Literal[
    "NEW",
    "WAITING_FOR_CUSTOMER",
    "WAITING_FOR_PARTNER",
    "WAITING_FOR_ARBITER",
    "WAITING_FOR_MARKET",
    "FINISHED",
]
Sender = Literal["PARTNER", "CUSTOMER", "MARKET", "SUPPORT"]
PositiveId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class FakePayload(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True, frozen=True):
    """A file attached to a message, as the API returns it."""

    name: str
    url: str
    size: int


class FakeMessage(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True, frozen=True):
    """A chat message, exactly as the API returns it."""

    message_id: int
    created_at: datetime
    sender: str
    message: str | None = None
    payload: list[FakePayload] | None = None


class Customer(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    name: str
    public_id: str


class FullContext(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    type: str
    customer: Customer | None = None
    campaign_id: int | None = None
    order_id: int | None = None
    return_id: int | None = None


class ChatInfo(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    chat_id: int
    order_id: int | None = None
    context: FullContext
    type: str
    status: str
    created_at: datetime
    updated_at: datetime


class Paging(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    next_page_token: str | None = None


class ChatsResult(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    chats: list[ChatInfo]
    paging: Paging


class HistoryResult(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    order_id: int | None = None
    context: FullContext
    messages: list[FakeMessage]
    paging: Paging


class CreateChatResult(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    chat_id: int


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class Envelope(msgspec.Struct, omit_defaults=True):
    status: str
    result: Any = None
    errors: list[ErrorDetail] | None = None


# Request bodies: decoding them validates the spec's constraints. A field
# the spec does not mark ``nullable`` is ``UNSET`` when absent, so an explicit
# ``null`` is refused; ``uniqueItems`` is checked by `repeated_items`.

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class ChatContext(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    type: ContextKind
    id: PositiveId


class CreateChatRequest(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    # The spec gives orderId no minimum: a non-positive one names no order (404).
    order_id: Int64 | msgspec.UnsetType = msgspec.UNSET
    context: ChatContext | msgspec.UnsetType = msgspec.UNSET


_NonEmpty = msgspec.Meta(min_length=1)


class GetChatsRequest(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    order_ids: Annotated[list[Int64], _NonEmpty] | None = None
    contexts: Annotated[list[ChatContext], _NonEmpty] | None = None
    context_types: Annotated[list[ContextType], _NonEmpty] | None = None
    types: Annotated[list[ChatType], _NonEmpty] | None = None
    statuses: Annotated[list[ChatStatus], _NonEmpty] | None = None


#: The ``uniqueItems`` arrays of each request body, by operation.
UNIQUE_ITEMS: dict[str, tuple[str, ...]] = {
    "get_chats": ("orderIds", "contexts", "contextTypes", "types", "statuses"),
}


def repeated_items(document: Any, fields: tuple[str, ...]) -> str | None:
    """The first of ``fields`` whose array repeats an item (JSON equality), if any."""
    if not isinstance(document, dict):
        return None
    for name in fields:
        items = document.get(name)
        if not isinstance(items, list):
            continue
        # Sorted keys: {"type": .., "id": ..} and {"id": .., "type": ..} are equal in JSON.
        keys = {msgspec.json.encode(item, order="sorted") for item in items}
        if len(keys) < len(items):
            return name
    return None


class HistoryRequest(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    message_id_from: PositiveId | msgspec.UnsetType = msgspec.UNSET


class SendMessageRequest(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


encoder = msgspec.json.Encoder()
