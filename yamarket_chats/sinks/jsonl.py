"""`JsonlSink`: append-only JSON Lines whose checkpoint is the file itself."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import IO

import msgspec

from ..ingest import ChatState, Page, PageSink
from ..models import Chat
from ._scan import Index, check_start, scan
from ._thread import _ThreadSink, check_lock_timeout, check_regular_file

__all__ = ["JsonlSink"]

_encode = msgspec.json.Encoder().encode


class JsonlSink(PageSink, _ThreadSink):
    """Append-only JSON Lines, one object per line, for pipelines.

    Lines are ``{"kind": "chat", "businessId": ..., <Chat fields>}``,
    ``{"kind": "message", "businessId": ..., "chatId": ..., <ChatMessage fields>}``
    and ``{"kind": "synced", "businessId", "chatId", "updatedAt", "syncedAt"}``
    (the end of a complete walk of a chat), field names camelCase as in the API.

    The checkpoint is the file itself: it is scanned once (by the first call,
    on the sink's thread), a torn last line is cut off, and each chat resumes
    after its highest message id written. Each page is written and flushed at
    once (``fsync=True`` also syncs it to disk), so message lines are
    exactly-once across crashes and re-runs. A chat line is appended when the
    chat is new or changed: the last line of a chat id is its current state.

    A damaged line does not stop the sink: it is repaired when the file is
    scanned, without losing a message or writing one twice (see `_scan`);
    what is removed goes to ``<path>.rejected``, each repair is logged as a
    WARNING on the ``yamarket_chats.sinks`` logger with its line number, and
    `rejected` lists those line numbers. A chat to fetch again after a damaged
    line stays marked in the file until it is walked to its end. A file that
    is not a sink's (its first line is not a sink line, or too many lines are
    damaged) is refused with `InvalidRequestError`, untouched, as is a path
    that is not a regular file.

    One sync at a time: the sink holds an exclusive OS lock on the file
    (``flock``, released when the sink is closed or its process dies, even by
    SIGKILL). If another sync holds it, the sink waits up to ``lock_timeout``
    seconds (default 0: fail at once, what an overlapping cron run wants) and
    raises `SinkLockedError`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, lock_timeout: float = 0
    ) -> None:
        check_lock_timeout(lock_timeout)  # before anything is created
        self._fsync = fsync
        self._index: Index | None = None  # the scan of the file, on first use
        #: Line numbers (1-based) of the damaged lines repaired when the file was scanned.
        self.rejected: list[int] = []
        # Opened here, so a bad path fails before any request is sent.
        check_regular_file(path)
        self._file: IO[bytes] = open(path, "a+b")  # noqa: SIM115 - closed by close()
        try:
            check_start(self._file, os.fspath(path))  # not a README, a database...
            super().__init__("yamarket-jsonl", path, self._file.fileno(), lock_timeout)
        except BaseException:
            self._file.close()
            raise

    def __repr__(self) -> str:
        return f"JsonlSink({os.fspath(self.path)!r})"

    def _close_sync(self) -> None:
        self._file.close()  # releases the lock

    def _scan(self) -> Index:
        if self._index is None:
            self._index = scan(self._file, os.fspath(self.path))
            self.rejected = self._index.rejected
        return self._index

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """Checkpoints from the scan of the file, by chat id."""
        if self._index is not None and self._idle():
            return self._load_state(business_id)  # from memory: no hand-off
        return await self._run(self._load_state, business_id)

    def _load_state(self, business_id: int) -> dict[int, ChatState]:
        index = self._scan()
        last_ids, synced = index.last_ids, index.synced
        states = {}
        for chat_id in index.chats_of.get(business_id, ()):
            walked = synced.get(chat_id)
            if walked is None:
                states[chat_id] = ChatState(last_ids.get(chat_id))
            else:
                updated = dt.datetime.fromisoformat(walked[0])
                states[chat_id] = ChatState(last_ids.get(chat_id), updated, walked[1])
        return states

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        """Append a line for each chat that is new or changed."""
        await self._run(self._save_chats, business_id, chats)

    def _save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        index = self._scan()
        lines = {}
        for chat in chats:
            line = b'{"kind":"chat","businessId":%d,' % business_id + _encode(chat)[1:]
            if index.chats.get(chat.chat_id) != hash(line):
                lines[chat.chat_id] = line
        self._append(list(lines.values()))
        for chat_id, line in lines.items():
            index.chats[chat_id] = hash(line)
            index.own(business_id, chat_id)

    async def _write_page(self, page: Page) -> None:
        """Append the page's message lines (and a ``synced`` line at a walk's end)."""
        await self._run(self._save_page, page)

    def _save_page(self, page: Page) -> None:
        business_id, chat_id, messages, state = page
        index = self._scan()
        last = index.last_ids.get(chat_id, 0)
        present = index.present.get(chat_id)  # refetched after a damaged line
        head = b'{"kind":"message","businessId":%d,"chatId":%d,' % (business_id, chat_id)
        lines = []
        for m in messages:
            if m.message_id <= last:
                continue  # never write a message twice
            last = m.message_id
            if present is None or last not in present:
                lines.append(head + _encode(m)[1:])
        synced = None
        if state.updated_at is not None and state.synced_at is not None:
            synced = (state.updated_at.isoformat(), state.synced_at)
            if index.synced.get(chat_id) != synced:
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
        if synced is not None:
            index.synced[chat_id] = synced
        if last:
            index.last_ids[chat_id] = last
            if present is not None and last >= max(present):
                del index.present[chat_id]  # past the damage: back to the fast path
        index.own(business_id, chat_id)

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
