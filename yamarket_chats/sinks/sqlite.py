"""`SQLiteSink`: chats, messages and checkpoints in one SQLite file.

Each page is written inline on the event loop: in WAL mode without fsync a
commit is a write into the OS cache, cheaper than handing the page to a
thread and back (the hand-off made `sync` 0.7x as fast as a plain loop, with
the GIL ping-ponging between the two threads). What can block runs on the
sink's thread instead: waiting for the sink's lock, waiting for another
writer of the database, the WAL checkpoints that fsync (see
`SQLiteSink._catch_up` for why they come in two steps), and `load_state`
(one read of a whole business's checkpoints).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from ..ingest import ChatState, Page, PageSink
from ..models import Chat, ChatMessage
from ._thread import _ThreadSink, check_lock_timeout, check_regular_file

__all__ = ["SQLiteSink"]

_encode = msgspec.json.Encoder().encode

SCHEMA = """
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
CREATE INDEX IF NOT EXISTS sync_state_business ON sync_state (business_id);
"""

# A chat as listed never replaces a newer one (a notification's, stored while
# a sync's older listing was on its way): julianday() compares the instants,
# whatever UTC offset each text carries.
_UPSERT_CHAT = """
INSERT INTO chats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (chat_id) DO UPDATE SET
    business_id = excluded.business_id, order_id = excluded.order_id,
    type = excluded.type, status = excluded.status,
    created_at = excluded.created_at, updated_at = excluded.updated_at,
    context_type = excluded.context_type, customer_name = excluded.customer_name,
    customer_public_id = excluded.customer_public_id, campaign_id = excluded.campaign_id,
    context_order_id = excluded.context_order_id, return_id = excluded.return_id
WHERE julianday(excluded.updated_at) >= julianday(chats.updated_at)
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


def _message_rows(
    business_id: int, chat_id: int, messages: Sequence[ChatMessage]
) -> list[tuple[Any, ...]]:
    encode = _encode  # one comprehension, locals only: this runs for every message
    return [
        (
            chat_id,
            m.message_id,
            business_id,
            m.created_at.isoformat(),
            m.sender,
            m.message,
            None if m.payload is None else encode(m.payload).decode(),
        )
        for m in messages
    ]


def _iso(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value is not None else None


T = TypeVar("T")

#: Commits between two WAL checkpoints (each runs on the sink's thread).
CHECKPOINT_EVERY = 200
#: How long a write waits for another writer of the database (seconds).
BUSY_TIMEOUT = 30.0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    return "locked" in str(exc)


class SQLiteSink(PageSink, _ThreadSink):
    """Chats, messages and checkpoints in one SQLite file (stdlib ``sqlite3``).

    Tables ``chats`` (key ``chat_id``), ``messages`` (key ``chat_id,
    message_id``; ``payload`` as JSON) and ``sync_state`` (the checkpoint of
    each chat, indexed by business). Rows are upserted, and each page of
    messages is committed in one transaction with its checkpoint: every
    message is stored exactly once, and a crash loses at most the page in
    flight. Timestamps are ISO 8601 strings with the API's UTC offset. WAL
    mode with ``synchronous=NORMAL``: a process crash loses no commit; a power
    loss may lose the last ones, which the next run fetches again. Other
    programs may read the database while a sync writes it.

    One sync at a time: the sink holds an exclusive lock on ``<path>.lock``
    (``<path>`` with symlinks resolved, so two paths of one database share it)
    (an OS file lock, released when the sink is closed or its process dies,
    even by SIGKILL; the file itself stays and is harmless). If another sync
    holds it, the sink waits up to ``lock_timeout`` seconds (default 0: fail
    at once, what an overlapping cron run wants) and raises `SinkLockedError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 0) -> None:
        check_lock_timeout(lock_timeout)  # before anything is created
        memory = os.fspath(path) in (":memory:", "")
        if not memory:
            check_regular_file(path)  # not a directory, a FIFO, a device
        # Opened here, so a bad path fails before any request is sent.
        # The busy timeout covers another sync creating the file right now;
        # once the sink holds its lock, writes on the loop use none (_setup).
        conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
        )
        lock_fd: int | None = None
        try:
            conn.execute("PRAGMA schema_version").fetchall()  # "file is not a database"
            if not memory:
                flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                # By the real path: a symlink to the database shares its lock.
                lock_fd = os.open(f"{os.path.realpath(path)}.lock", flags, 0o644)
            self._conn = conn
            self._memory = memory
            self._checkpointer: sqlite3.Connection | None = None  # for _checkpoint_bulk
            # The bulk of the last checkpoint, then its rest (see _catch_up).
            self._checkpointing: concurrent.futures.Future[None] | None = None
            self._bulk = False  # _checkpointing is the bulk, not the rest
            self._commits = 0
            super().__init__("yamarket-sqlite", path, lock_fd, lock_timeout)
        except BaseException:
            conn.close()
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        self._lock_fd = lock_fd

    def __repr__(self) -> str:
        return f"SQLiteSink({os.fspath(self.path)!r})"

    def _setup(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # see _checkpoint
        conn.executescript(SCHEMA)  # and the index of older databases
        conn.execute("PRAGMA busy_timeout = 0")  # inline writes never wait

    def _close_sync(self) -> None:
        try:
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._conn.close()  # the last connection checkpoints the WAL away
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the lock

    # -- running statements: inline when nothing is queued, else on the thread

    def _waiting(self, fn: Callable[..., T], *args: Any) -> T:
        self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        try:
            return fn(*args)
        finally:
            self._conn.execute("PRAGMA busy_timeout = 0")

    async def _execute(self, fn: Callable[..., T], *args: Any) -> T:
        if self._bulk:
            self._catch_up()
        if self._idle():
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                # Another program writes the database: wait on the thread.
        return await self._run(self._waiting, fn, *args)

    # -- the Sink protocol

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """The checkpoints of a business's chats, by chat id (read on the sink's thread)."""
        # Not inline: 200k chats would hold the event loop for most of a second.
        return await self._run(self._waiting, self._load_state, business_id)

    def _load_state(self, business_id: int) -> dict[int, ChatState]:
        rows = self._conn.execute(
            "SELECT chat_id, last_message_id, updated_at, synced_at FROM sync_state"
            " WHERE business_id = ?",
            (business_id,),
        )
        return {row[0]: ChatState(row[1], _iso(row[2]), row[3]) for row in rows}

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement, run on the sink's thread.

        It runs after the writes handed over before it, with the connection
        set to ``query_only`` (a statement that would write raises
        ``sqlite3.OperationalError``). `yamarket_chats.desk` reads an open sink
        through it; another process may read the file while this sink writes.
        """
        return await self._run(self._waiting, self._query, sql, params)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._conn
        conn.execute("PRAGMA query_only = 1")
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.execute("PRAGMA query_only = 0")

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        """Upsert chats as listed."""
        rows = [_chat_row(business_id, chat) for chat in chats]
        await self._execute(self._write, _UPSERT_CHAT, rows, None)

    async def save_messages(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage]
    ) -> None:
        """Upsert messages and leave the chat's checkpoint as it is.

        For messages that arrive outside a sync (a notification's, see
        `yamarket_chats.notifications.into_sink`): the next sync still walks
        from its own checkpoint, so storing one never makes it skip another.
        """
        rows = _message_rows(business_id, chat_id, messages)
        await self._execute(self._write, _UPSERT_MESSAGE, rows, None)

    async def _write_page(self, page: Page) -> None:
        """Upsert a page of messages and the chat's checkpoint in one transaction."""
        business_id, chat_id, messages, state = page
        rows = _message_rows(business_id, chat_id, messages)
        updated = state.updated_at.isoformat() if state.updated_at is not None else None
        state_row = (chat_id, business_id, state.last_message_id, updated, state.synced_at)
        await self._execute(self._write, _UPSERT_MESSAGE, rows, state_row)

    def _write(
        self, sql: str, rows: list[tuple[Any, ...]], state_row: tuple[Any, ...] | None
    ) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # busy here, not halfway
        try:
            conn.executemany(sql, rows)
            if state_row is not None:
                conn.execute(_UPSERT_STATE, state_row)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may have rolled back already
                conn.execute("ROLLBACK")
            raise
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and not self._memory:
            self._checkpoint_soon()

    # -- WAL checkpoints, off the event loop (automatic ones would fsync on it)

    def _checkpoint_soon(self) -> None:
        if self._closed:
            return  # the connection closes right after this write
        current = self._checkpointing
        if current is not None and (self._bulk or not current.done()):
            return  # the last one is not finished
        self._commits = 0
        # Not in `_pending`: the loop goes on writing meanwhile.
        self._checkpointing = self._executor.submit(self._call, self._checkpoint_bulk)
        self._bulk = True

    def _checkpoint_bulk(self) -> None:
        # Most of the WAL is copied into the database (and fsynced) by a second
        # connection while the loop goes on writing through the first one.
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _catch_up(self) -> None:
        # On the loop, between two writes, once the bulk is copied. A checkpoint
        # beside a steady writer never catches up, and the WAL only starts over
        # once one has (it grew past 3x the database): so the rest is copied
        # with the writes held back, queued on the thread behind it (the loop
        # itself goes on).
        assert self._checkpointing is not None
        if self._checkpointing.done():
            self._checkpointing = self._submit(self._checkpoint_rest)
            self._bulk = False  # last: a write on the thread tests it first

    def _checkpoint_rest(self) -> None:
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
