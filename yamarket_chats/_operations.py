"""The seven operations of the chat API, in one table.

Everything the library knows of an operation is a column here: the client
method's name, the HTTP method and path (after ``/v2/businesses/{id}``),
whether it may be sent again when its fate is unknown, the client's default
hourly limit and the model of its result. The client, the limits and the
argument checks read this table; adding an operation starts with a row.
The fake server keeps a table of its own (`yamarket_chats.testing`), so that
it never shares a mistake made here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .models import Chat, ChatHistoryPage, ChatMessage, ChatsPage, CreateChatResult

__all__ = ["METHODS", "OPERATIONS", "Operation"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation: its name (the client method), HTTP method and path."""

    name: str
    http: str
    path: str
    #: Whether a failure that may have reached the server can be retried:
    #: reads and create_chat (which returns the existing chat) can; sends
    #: cannot, and they always go on a fresh connection.
    idempotent: bool
    #: The client's default bucket: requests per hour, per business id.
    hourly_limit: int
    #: The model of the envelope's ``result``; ``None`` for sends (no result).
    result: type[Any] | None


def _table(*rows: Operation) -> Mapping[str, Operation]:
    return MappingProxyType({row.name: row for row in rows})


OPERATIONS: Mapping[str, Operation] = _table(
    Operation("create_chat", "POST", "/chats/new", True, 1_000, CreateChatResult),
    Operation("get_chats", "POST", "/chats", True, 10_000, ChatsPage),
    Operation("get_chat", "GET", "/chat", True, 1_000, Chat),
    Operation("get_chat_history", "POST", "/chats/history", True, 10_000, ChatHistoryPage),
    Operation("get_chat_message", "GET", "/chats/message", True, 1_000, ChatMessage),
    Operation("send_message_to_chat", "POST", "/chats/message", False, 1_000, None),
    Operation("send_file_to_chat", "POST", "/chats/file/send", False, 1_000, None),
)

#: The operation names, in the spec's order: the keys of ``limits=``.
METHODS: tuple[str, ...] = tuple(OPERATIONS)
