"""`SQLiteSink`: chats, messages and checkpoints in one SQLite file."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..ingest import ChatState
from ..models import Chat, ChatMessage
from ._thread import _ThreadSink

__all__ = ["SQLiteSink"]

_encode = msgspec.json.Encoder().encode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    chat_id INTEGER PRIMARY KEY,
    business_id INTEGER NOT NULL,
    order_id INTEGER,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    context_type TEXT NOT NULL,
    customer_name TEXT,
    customer_public_id TEXT,
    campaign_id INTEGER,
    context_order_id INTEGER,
    return_id INTEGER
);
CREATE INDEX IF NOT EXISTS chats_business ON chats (business_id);
CREATE TABLE IF NOT EXISTS messages (
    chat_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    business_id INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    sender TEXT NOT NULL,
    message TEXT,
    payload TEXT,  -- JSON list of {name, url, size}, or NULL
    PRIMARY KEY (chat_id, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_state (
    chat_id INTEGER PRIMARY KEY,
    business_id INTEGER NOT NULL,
    last_message_id INTEGER,
    updated_at TEXT,
    synced_at REAL
);
"""

_UPSERT_CHAT = """
INSERT INTO chats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (chat_id) DO UPDATE SET
    business_id = excluded.business_id, order_id = excluded.order_id,
    type = excluded.type, status = excluded.status,
    created_at = excluded.created_at, updated_at = excluded.updated_at,
    context_type = excluded.context_type, customer_name = excluded.customer_name,
    customer_public_id = excluded.customer_public_id, campaign_id = excluded.campaign_id,
    context_order_id = excluded.context_order_id, return_id = excluded.return_id
"""

_UPSERT_MESSAGE = """
INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (chat_id, message_id) DO UPDATE SET
    business_id = excluded.business_id, created_at = excluded.created_at,
    sender = excluded.sender, message = excluded.message, payload = excluded.payload
"""

_UPSERT_STATE = """
INSERT INTO sync_state VALUES (?, ?, ?, ?, ?)
ON CONFLICT (chat_id) DO UPDATE SET
    business_id = excluded.business_id, last_message_id = excluded.last_message_id,
    updated_at = excluded.updated_at, synced_at = excluded.synced_at
"""


def _chat_row(business_id: int, chat: Chat) -> tuple[Any, ...]:
    ctx = chat.context
    customer = ctx.customer
    return (
        chat.chat_id,
        business_id,
        chat.order_id,
        chat.type,
        chat.status,
        chat.created_at.isoformat(),
        chat.updated_at.isoformat(),
        ctx.type,
        customer.name if customer else None,
        customer.public_id if customer else None,
        ctx.campaign_id,
        ctx.order_id,
        ctx.return_id,
    )


def _message_row(business_id: int, chat_id: int, m: ChatMessage) -> tuple[Any, ...]:
    payload = _encode(m.payload).decode() if m.payload is not None else None
    return (
        chat_id,
        m.message_id,
        business_id,
        m.created_at.isoformat(),
        m.sender,
        m.message,
        payload,
    )


def _iso(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value is not None else None


class SQLiteSink(_ThreadSink):
    """Chats, messages and checkpoints in one SQLite file (stdlib ``sqlite3``).

    Tables ``chats`` (key ``chat_id``), ``messages`` (key ``chat_id,
    message_id``; ``payload`` as JSON) and ``sync_state`` (the checkpoint of
    each chat). Rows are upserted, and each page of messages is committed in
    one transaction with its checkpoint: every message is stored exactly once,
    and a crash loses at most the page in flight. Timestamps are ISO 8601
    strings with the API's UTC offset. WAL mode with ``synchronous=NORMAL``:
    a process crash loses no commit; a power loss may lose the last ones,
    which the next run fetches again.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # Opened here, so a bad path fails before any request is sent.
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        super().__init__("yamarket-sqlite")
        self.path = path
        self._conn = conn

    def __repr__(self) -> str:
        return f"SQLiteSink({os.fspath(self.path)!r})"

    def _close_sync(self) -> None:
        self._conn.close()

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """The checkpoints of a business's chats, by chat id."""
        return await self._run(self._load_state, business_id)

    def _load_state(self, business_id: int) -> dict[int, ChatState]:
        rows = self._conn.execute(
            "SELECT chat_id, last_message_id, updated_at, synced_at FROM sync_state"
            " WHERE business_id = ?",
            (business_id,),
        )
        return {row[0]: ChatState(row[1], _iso(row[2]), row[3]) for row in rows}

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        """Upsert chats as listed."""
        rows = [_chat_row(business_id, chat) for chat in chats]
        await self._run(self._write, _UPSERT_CHAT, rows, None)

    async def save_page(
        self,
        business_id: int,
        chat_id: int,
        messages: Sequence[ChatMessage],
        state: ChatState,
    ) -> None:
        """Upsert a page of messages and the chat's checkpoint in one transaction."""
        rows = [_message_row(business_id, chat_id, m) for m in messages]
        updated = state.updated_at.isoformat() if state.updated_at is not None else None
        state_row = (chat_id, business_id, state.last_message_id, updated, state.synced_at)
        await self._run(self._write, _UPSERT_MESSAGE, rows, state_row)

    def _write(
        self, sql: str, rows: list[tuple[Any, ...]], state_row: tuple[Any, ...] | None
    ) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany(sql, rows)
            if state_row is not None:
                conn.execute(_UPSERT_STATE, state_row)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
