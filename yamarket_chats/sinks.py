"""Sinks for `yamarket_chats.ingest.sync`: SQLite (the default) and JSON Lines.

Both do their blocking file work on one private thread, so the event loop
never waits on the disk and writes are serialized in the order they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import IO, Any, TypeVar

import msgspec

from .ingest import ChatState
from .models import Chat, ChatMessage

__all__ = ["JsonlSink", "SQLiteSink"]

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode


class _ThreadSink:
    """An async facade over blocking work done in order on one thread."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _close_sync(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Finish the writes already handed over (even by cancelled tasks), then close."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_sync)
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


_S = TypeVar("_S", bound=_ThreadSink)

# -- SQLite -------------------------------------------------------------------

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


# -- JSON Lines ---------------------------------------------------------------


class _Line(msgspec.Struct, rename="camel"):
    """The fields of a line that the checkpoint scan needs."""

    kind: str = ""
    business_id: int = 0
    chat_id: int = 0
    message_id: int = 0
    updated_at: str | None = None
    synced_at: float | None = None


_line_decoder = msgspec.json.Decoder(_Line)


class JsonlSink(_ThreadSink):
    """Append-only JSON Lines, one object per line, for pipelines.

    Lines are ``{"kind": "chat", "businessId": ..., <Chat fields>}``,
    ``{"kind": "message", "businessId": ..., "chatId": ..., <ChatMessage fields>}``
    and ``{"kind": "synced", "businessId", "chatId", "updatedAt", "syncedAt"}``
    (the end of a complete walk of a chat), field names camelCase as in the API.

    The checkpoint is the file itself: on open the file is scanned, a torn
    last line is cut off, and each chat resumes after its highest message id
    written. Each page is written and flushed at once (``fsync=True`` also
    syncs it to disk), so message lines are exactly-once across crashes and
    re-runs. A chat line is appended when the chat is new or changed: the
    last line of a chat id is its current state.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = path
        self._fsync = fsync
        # Opened here, so a bad path fails before any request is sent.
        self._file: IO[bytes] = open(path, "a+b")  # noqa: SIM115 - closed by close()
        super().__init__("yamarket-jsonl")
        self._scanned = False
        self._last_ids: dict[int, int] = {}
        self._synced: dict[int, tuple[str, float]] = {}
        self._chats: dict[int, bytes] = {}  # chat id -> its last chat line
        self._business_of: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"JsonlSink({os.fspath(self.path)!r})"

    def _close_sync(self) -> None:
        self._file.close()

    def _scan(self) -> None:
        if self._scanned:
            return
        f = self._file
        f.seek(0)
        good = 0
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a torn last line: its page is not complete, fetch it again
            line = _line_decoder.decode(raw)
            good += len(raw)
            if line.kind == "message":
                if line.message_id > self._last_ids.get(line.chat_id, 0):
                    self._last_ids[line.chat_id] = line.message_id
            elif line.kind == "chat":
                self._chats[line.chat_id] = raw.rstrip(b"\n")
                self._business_of[line.chat_id] = line.business_id
            elif line.kind == "synced" and line.updated_at is not None:
                self._synced[line.chat_id] = (line.updated_at, line.synced_at or 0.0)
                self._business_of[line.chat_id] = line.business_id
        f.truncate(good)
        f.seek(0, os.SEEK_END)
        self._scanned = True

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """Checkpoints from the scan of the file, by chat id."""
        return await self._run(self._load_state, business_id)

    def _load_state(self, business_id: int) -> dict[int, ChatState]:
        self._scan()
        states = {}
        for chat_id, owner in self._business_of.items():
            if owner != business_id:
                continue
            synced = self._synced.get(chat_id)
            states[chat_id] = ChatState(
                self._last_ids.get(chat_id),
                _iso(synced[0]) if synced else None,
                synced[1] if synced else None,
            )
        return states

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        """Append a line for each chat that is new or changed."""
        await self._run(self._save_chats, business_id, chats)

    def _save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        self._scan()
        lines = []
        for chat in chats:
            line = b'{"kind":"chat","businessId":%d,' % business_id + _encode(chat)[1:]
            if self._chats.get(chat.chat_id) != line:
                self._chats[chat.chat_id] = line
                self._business_of[chat.chat_id] = business_id
                lines.append(line)
        self._append(lines)

    async def save_page(
        self,
        business_id: int,
        chat_id: int,
        messages: Sequence[ChatMessage],
        state: ChatState,
    ) -> None:
        """Append the page's message lines (and a ``synced`` line at a walk's end)."""
        await self._run(self._save_page, business_id, chat_id, messages, state)

    def _save_page(
        self,
        business_id: int,
        chat_id: int,
        messages: Sequence[ChatMessage],
        state: ChatState,
    ) -> None:
        self._scan()
        last = self._last_ids.get(chat_id, 0)
        head = b'{"kind":"message","businessId":%d,"chatId":%d,' % (business_id, chat_id)
        lines = []
        for m in messages:
            if m.message_id > last:  # never write a message twice
                lines.append(head + _encode(m)[1:])
                last = m.message_id
        if state.updated_at is not None and state.synced_at is not None:
            synced = (state.updated_at.isoformat(), state.synced_at)
            if self._synced.get(chat_id) != synced:
                self._synced[chat_id] = synced
                lines.append(
                    _encode(
                        {
                            "kind": "synced",
                            "businessId": business_id,
                            "chatId": chat_id,
                            "updatedAt": synced[0],
                            "syncedAt": synced[1],
                        }
                    )
                )
        self._append(lines)
        if last:
            self._last_ids[chat_id] = last
        self._business_of[chat_id] = business_id

    def _append(self, lines: list[bytes]) -> None:
        if not lines:
            return
        # Straight to the descriptor (O_APPEND), so that a failed write (a
        # full disk) can be cut off: a torn line left in the middle of the
        # file would glue onto the next append and break the next scan.
        fd = self._file.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            rest = memoryview(b"\n".join(lines) + b"\n")
            while rest:
                rest = rest[os.write(fd, rest) :]
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
