"""Where the desk reads: a SQLite file, an open `SQLiteSink`, or a `PostgresSink`.

The desk only reads, and never through a sync's lock: a support desk reads
the database while ``sync --follow`` writes it. A SQLite *path* is opened
read-only for each query, in a worker thread (a connection costs tens of
microseconds, and nothing is held between two questions); an open
`SQLiteSink` is read through `SQLiteSink.query`, behind its own writes; a
`PostgresSink` through `PostgresSink.query`. Each query is written once, with
``{s}`` for the tables' schema and ``{p}`` for parameters, and `run` makes
the dialect's text. JSON Lines cannot answer queries and is refused, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union, cast

from ..errors import InvalidRequestError
from ..sinks._kind import is_sink

if TYPE_CHECKING:
    from ..sinks.postgres import PostgresSink
    from ..sinks.sqlite import SQLiteSink

__all__ = ["Source", "check_source", "run"]

Source = Union[str, "os.PathLike[str]", "SQLiteSink", "PostgresSink"]
"""What the desk reads: a SQLite file's path, an open `SQLiteSink`, or a `PostgresSink`."""

_REFUSED = (
    "the desk reads a SQLite file, a SQLiteSink or a PostgresSink; {what} cannot answer"
    " queries (sync into SQLite or PostgreSQL: yamarket-chats sync --db F | --postgres-url URL)"
)


def check_source(source: object) -> None:
    """`InvalidRequestError` unless the desk can read ``source`` (JSON Lines is named)."""
    if isinstance(source, (str, os.PathLike)) or any(
        is_sink(source, name) for name in ("SQLiteSink", "PostgresSink")
    ):
        return
    name = type(source).__name__
    what = "a JSON Lines file (JsonlSink)" if name == "JsonlSink" else f"a {name}"
    raise InvalidRequestError(_REFUSED.format(what=what))


async def run(source: Source, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
    """The rows of query ``sql`` (``{s}`` schema, ``{p}`` parameters) read from ``source``."""
    check_source(source)
    if isinstance(source, (str, os.PathLike)):
        return await asyncio.to_thread(_read_file, source, _sqlite(sql), params)
    if is_sink(source, "SQLiteSink"):
        return list(await cast("SQLiteSink", source).query(_sqlite(sql), params))
    source = cast("PostgresSink", source)
    rows: list[Sequence[Any]] = await source.query(
        _postgres(sql, source.schema), *params, fetch="all", doing="read the desk"
    )
    return rows


def _postgres(sql: str, schema: str) -> str:
    parts = sql.replace("{s}", f"{schema}.").split("{p}")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


def _sqlite(sql: str) -> str:
    return sql.replace("{p}", "?").replace("{s}", "")


def _read_file(path: str | os.PathLike[str], sql: str, params: Sequence[Any]) -> list[Any]:
    name = os.fspath(path)
    if not os.path.isfile(name):
        what = "not a file" if os.path.exists(name) else "no such SQLite database"
        raise InvalidRequestError(
            f"{name}: {what}; sync into a SQLite file first (yamarket-chats sync --db)"
        )
    uri = pathlib.Path(name).resolve().as_uri() + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "no such table" in text or "not a database" in text:
            raise InvalidRequestError(
                f"{name} is not a yamarket-chats SQLite database ({text}); "
                + _REFUSED.format(what="a JSON Lines file")
            ) from None
        raise InvalidRequestError(f"{name}: cannot read it: {text}") from exc
