"""Sinks for `yamarket_chats.ingest.sync`: SQLite (the default), JSON Lines and PostgreSQL.

Each sink module holds one sink; `_thread` is the async facade over the
blocking file work the file sinks share. The sinks load on first use (PEP
562), so a program that writes SQLite never loads the PostgreSQL sink (nor
the fleet's lease code it builds on); asyncpg itself is imported when a
PostgreSQL sink opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:
    from .jsonl import JsonlSink
    from .postgres import PostgresSink
    from .sqlite import SQLiteSink

__all__ = ["JsonlSink", "PostgresSink", "SQLiteSink"]

_MODULES = {"JsonlSink": ".jsonl", "PostgresSink": ".postgres", "SQLiteSink": ".sqlite"}

if not TYPE_CHECKING:  # hidden from type checkers: a misspelt name stays an error
    __getattr__, __dir__ = attach(__name__, _MODULES, __all__)
