"""Sinks for `yamarket_chats.ingest.sync`: SQLite (the default) and JSON Lines.

Each sink module holds one sink; `_thread` is the async facade over the
blocking file work that both share.
"""

from .jsonl import JsonlSink
from .sqlite import SQLiteSink

__all__ = ["JsonlSink", "SQLiteSink"]
