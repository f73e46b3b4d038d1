"""Asyncio client for the chat methods of the Yandex Market Partner API.

>>> async with ChatsClient(api_key="ACMA:...") as client:
...     async for message in client.iter_chat_history(business_id, chat_id):
...         print(message.message_id, message.message)

The public names load on first use (PEP 562): ``import yamarket_chats`` alone
imports no aiohttp or msgspec, so the pytest plugin, which every pytest run of
an environment with this package loads, and the console script, which must
catch signals from its first instant, cost nothing until they need the client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._lazy import attach
from ._version import __version__ as __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from .client import ChatsClient
    from .errors import (
        ApiError,
        BadRequestError,
        ForbiddenError,
        InvalidRequestError,
        NotFoundError,
        PaginationError,
        RateLimitError,
        ResponseDecodeError,
        ServerError,
        SinkLockedError,
        TransportError,
        UnauthorizedError,
        YandexMarketError,
    )
    from .hooks import CallInfo, ClientHooks
    from .ingest import ChatState, Sink, SyncObserver, SyncReport, sync
    from .limits import DEFAULT_LIMITS, Limiter, RateLimit
    from .models import (
        ApiErrorDetail,
        Chat,
        ChatContext,
        ChatContextIdentifiableType,
        ChatContextType,
        ChatCustomer,
        ChatFullContext,
        ChatHistoryPage,
        ChatMessage,
        ChatMessagePayload,
        ChatsPage,
        ChatStatus,
        ChatType,
        CreateChatResult,
        MessageSender,
        Paging,
    )
    from .pagination import PageIterator
    from .sinks import JsonlSink, PostgresSink, SQLiteSink  # asyncpg loads when a sink opens
    from .stats import ClientStats, OperationStats, StatsSnapshot

# A library's records go where the application sends them; with no logging
# configured, nothing is printed (Python's last-resort handler would print
# every WARNING to stderr).
logging.getLogger(__name__).addHandler(logging.NullHandler())


__all__ = [
    "DEFAULT_LIMITS",
    "ApiError",
    "ApiErrorDetail",
    "BadRequestError",
    "CallInfo",
    "Chat",
    "ChatContext",
    "ChatContextIdentifiableType",
    "ChatContextType",
    "ChatCustomer",
    "ChatFullContext",
    "ChatHistoryPage",
    "ChatMessage",
    "ChatMessagePayload",
    "ChatState",
    "ChatStatus",
    "ChatType",
    "ChatsClient",
    "ChatsPage",
    "ClientHooks",
    "ClientStats",
    "CreateChatResult",
    "ForbiddenError",
    "InvalidRequestError",
    "JsonlSink",
    "Limiter",
    "MessageSender",
    "NotFoundError",
    "OperationStats",
    "PageIterator",
    "PaginationError",
    "Paging",
    "PostgresSink",
    "RateLimit",
    "RateLimitError",
    "ResponseDecodeError",
    "SQLiteSink",
    "ServerError",
    "Sink",
    "SinkLockedError",
    "StatsSnapshot",
    "SyncObserver",
    "SyncReport",
    "TransportError",
    "UnauthorizedError",
    "YandexMarketError",
    "sync",
]

# Each public name and the module that defines it (the imports above, for run time).
_MODULES: dict[str, str] = {
    "ChatsClient": ".client",
    "ApiError": ".errors",
    "BadRequestError": ".errors",
    "ForbiddenError": ".errors",
    "InvalidRequestError": ".errors",
    "NotFoundError": ".errors",
    "PaginationError": ".errors",
    "RateLimitError": ".errors",
    "ServerError": ".errors",
    "SinkLockedError": ".errors",
    "ResponseDecodeError": ".errors",
    "TransportError": ".errors",
    "UnauthorizedError": ".errors",
    "YandexMarketError": ".errors",
    "CallInfo": ".hooks",
    "ClientHooks": ".hooks",
    "ChatState": ".ingest",
    "Sink": ".ingest",
    "SyncObserver": ".ingest",
    "SyncReport": ".ingest",
    "sync": ".ingest",
    "DEFAULT_LIMITS": ".limits",
    "Limiter": ".limits",
    "RateLimit": ".limits",
    "ApiErrorDetail": ".models",
    "Chat": ".models",
    "ChatContext": ".models",
    "ChatContextIdentifiableType": ".models",
    "ChatContextType": ".models",
    "ChatCustomer": ".models",
    "ChatFullContext": ".models",
    "ChatHistoryPage": ".models",
    "ChatMessage": ".models",
    "ChatMessagePayload": ".models",
    "ChatsPage": ".models",
    "ChatStatus": ".models",
    "ChatType": ".models",
    "CreateChatResult": ".models",
    "MessageSender": ".models",
    "Paging": ".models",
    "PageIterator": ".pagination",
    "JsonlSink": ".sinks",
    "PostgresSink": ".sinks",
    "SQLiteSink": ".sinks",
    "ClientStats": ".stats",
    "OperationStats": ".stats",
    "StatsSnapshot": ".stats",
}


if not TYPE_CHECKING:  # hidden from type checkers: a misspelt name stays an error, not Any
    __getattr__, __dir__ = attach(__name__, _MODULES, __all__)
