"""Which of the library's sinks an object is, without importing any sink.

A reader of a sink (the desk, the CLI's readiness check) must not load the
SQLite or PostgreSQL sink, nor the client and asyncpg behind them, to learn
what it was given. So the sink is recognised by the names of its classes,
subclasses included: a user's ``class MySink(SQLiteSink)`` is a SQLiteSink.
"""

from __future__ import annotations

__all__ = ["is_sink"]


def is_sink(value: object, name: str) -> bool:
    """Whether ``value`` is an instance of the library's sink class ``name`` (or a subclass)."""
    return any(
        kind.__name__ == name and kind.__module__.startswith("yamarket_chats.sinks.")
        for kind in type(value).__mro__
    )
