"""The tools' structured outputs: pydantic models, so the SDK publishes their JSON schemas.

The desk's own structs (`WaitingChat`, `ChatView`) are msgspec; these are
their shapes for a model to read: times as ISO 8601 text, files as names,
the buyer's text cut where it would flood the model's context.
"""

import datetime as dt
from typing import Final, Literal

from pydantic import BaseModel, Field

from ...models import ChatMessage
from .._history import ChatView
from .._queue import WaitingChat

__all__ = ["ChatHistory", "Message", "Queue", "QueuedChat", "SendResult", "history", "queued"]

#: Characters of a buyer's message shown in the queue and in a confirmation.
QUOTE_CHARS: Final = 500


class QueuedChat(BaseModel):
    """A chat waiting for the seller's answer."""

    business_id: int
    chat_id: int
    status: str = Field(description="NEW or WAITING_FOR_PARTNER")
    waiting_since: str = Field(description="ISO 8601: since when the buyer waits")
    waited_minutes: int
    context_type: str = Field(description="ORDER, RETURN or DIRECT")
    order_id: int | None
    return_id: int | None
    customer_name: str | None
    last_message: str | None = Field(description="the buyer's last message (may be cut)")
    last_message_files: list[str]


class Queue(BaseModel):
    """The reply-due queue, oldest wait first."""

    chats: list[QueuedChat]
    total: int = Field(description="chats waiting in all; only the first ones are listed")


class Message(BaseModel):
    """One message of a chat."""

    message_id: int
    created_at: str
    sender: str = Field(description="CUSTOMER (the buyer), PARTNER (the seller), MARKET, SUPPORT")
    text: str | None
    files: list[str]


class ChatHistory(BaseModel):
    """A chat and its last messages, oldest first."""

    business_id: int
    chat_id: int
    status: str
    context_type: str
    order_id: int | None
    return_id: int | None
    customer_name: str | None
    messages: list[Message]
    earlier_messages: bool = Field(description="older messages exist beyond these")


class SendResult(BaseModel):
    """What became of a reply."""

    sent: bool = Field(description="true only if this call sent the message")
    outcome: Literal["sent", "already_sent", "declined", "cancelled", "uncertain"]
    detail: str


def queued(chat: WaitingChat, now: dt.datetime) -> QueuedChat:
    """A queue row for the model."""
    last = chat.last_message
    return QueuedChat(
        business_id=chat.business_id,
        chat_id=chat.chat_id,
        status=chat.status,
        waiting_since=chat.waiting_since.isoformat(),
        waited_minutes=max(int(chat.waited(now).total_seconds() // 60), 0),
        context_type=chat.context_type,
        order_id=chat.order_id,
        return_id=chat.return_id,
        customer_name=chat.customer_name,
        last_message=None if last is None else last[:QUOTE_CHARS],
        last_message_files=list(chat.last_message_files),
    )


def _message(m: ChatMessage) -> Message:
    files = [f"{p.name} ({p.size} bytes)" for p in m.payload or ()]
    return Message(
        message_id=m.message_id,
        created_at=m.created_at.isoformat(),
        sender=m.sender,
        text=m.message,
        files=files,
    )


def history(view: ChatView) -> ChatHistory:
    """A chat for the model."""
    return ChatHistory(
        business_id=view.business_id,
        chat_id=view.chat_id,
        status=view.status,
        context_type=view.context_type,
        order_id=view.order_id,
        return_id=view.return_id,
        customer_name=view.customer_name,
        messages=[_message(m) for m in view.messages],
        earlier_messages=view.earlier,
    )
