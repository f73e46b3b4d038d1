"""Asyncio client for the chat methods of the Yandex Market Partner API.

>>> async with ChatsClient(api_key="ACMA:...") as client:
...     async for message in client.iter_chat_history(business_id, chat_id):
...         print(message.message_id, message.message)
"""

import logging

from .client import ChatsClient
from .errors import (
    ApiError,
    BadRequestError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PaginationError,
    RateLimitError,
    ServerError,
    SinkLockedError,
    TransportError,
    UnauthorizedError,
    YandexMarketError,
)
from .hooks import CallInfo, ClientHooks
from .ingest import ChatState, Sink, SyncReport, sync
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

__version__ = "0.1.0"

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
    "SQLiteSink",
    "ServerError",
    "Sink",
    "SinkLockedError",
    "StatsSnapshot",
    "SyncReport",
    "TransportError",
    "UnauthorizedError",
    "YandexMarketError",
    "sync",
]
