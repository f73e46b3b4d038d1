"""asyncpg, imported when a sink first connects, and what its failures become.

The ``postgres`` extra is optional: nothing here imports asyncpg until a sink
opens, so ``import yamarket_chats`` never needs it.
"""

from __future__ import annotations

from typing import Any

from ..._extras import missing_extra
from ...errors import YandexMarketError


class PostgresSinkError(YandexMarketError):
    """PostgreSQL failed (unreachable, refused, or an SQL error); never shows the password."""


def driver() -> Any:
    """asyncpg, imported on first use."""
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ModuleNotFoundError as error:
        raise missing_extra(error, "postgres", "yamarket_chats.sinks.PostgresSink") from None

    return asyncpg


def db_errors() -> tuple[type[BaseException], ...]:
    """What a failing database or connection raises (wrapped in `PostgresSinkError`)."""
    asyncpg = driver()
    return (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
