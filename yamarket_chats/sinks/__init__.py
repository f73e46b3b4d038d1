"""Sinks for `yamarket_chats.ingest.sync`: SQLite (the default) and JSON Lines.

Each sink module holds one sink; `_thread` is the async facade over the
blocking file work that both share.
"""

from .jsonl import JsonlSink
from .postgres import PostgresSink  # asyncpg is imported when a sink opens
from .sqlite import SQLiteSink

__all__ = ["JsonlSink", "PostgresSink", "SQLiteSink"]
