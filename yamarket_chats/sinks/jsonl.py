"""`JsonlSink`: append-only JSON Lines whose checkpoint is the file itself."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from typing import IO

import msgspec

from ..ingest import ChatState
from ..models import Chat, ChatMessage
from ._thread import _ThreadSink

__all__ = ["JsonlSink"]

log = logging.getLogger("yamarket_chats.sinks")

_encode = msgspec.json.Encoder().encode
_PLACEHOLDER = b'{"kind":"rejected"}'


def _iso(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value is not None else None


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

    A line that is not one of these (written by something else, or damaged)
    is quarantined by the scan: its bytes are appended to ``<path>.rejected``,
    it is overwritten in place by ``{"kind":"rejected"}`` padded with spaces
    to the same length (a blank line if it is shorter), and a WARNING on the
    ``yamarket_chats.sinks`` logger gives its line number; `rejected` lists
    them. The valid lines around it are kept, and the checkpoint comes from
    the valid lines only, so a message inside a rejected line is fetched and
    written again: the file's valid lines hold every message exactly once.

    One sync at a time: the sink holds an exclusive OS lock on the file
    (``flock``, released when the sink is closed or its process dies, even by
    SIGKILL). If another sync holds it, the sink waits up to ``lock_timeout``
    seconds (default 0: fail at once, what an overlapping cron run wants) and
    raises `SinkLockedError`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, lock_timeout: float = 0
    ) -> None:
        self._fsync = fsync
        # Opened here, so a bad path fails before any request is sent.
        self._file: IO[bytes] = open(path, "a+b")  # noqa: SIM115 - closed by close()
        try:
            super().__init__("yamarket-jsonl", path, self._file.fileno(), lock_timeout)
        except BaseException:
            self._file.close()
            raise
        self._scanned = False
        self._last_ids: dict[int, int] = {}
        self._synced: dict[int, tuple[str, float]] = {}
        self._chats: dict[int, bytes] = {}  # chat id -> its last chat line
        self._business_of: dict[int, int] = {}
        self._chats_of: dict[int, set[int]] = {}  # business id -> its chat ids
        #: Line numbers (1-based) the scan quarantined to ``<path>.rejected``.
        self.rejected: list[int] = []

    def __repr__(self) -> str:
        return f"JsonlSink({os.fspath(self.path)!r})"

    def _close_sync(self) -> None:
        self._file.close()  # releases the lock

    def _own(self, business_id: int, chat_id: int) -> None:
        old = self._business_of.get(chat_id)
        if old != business_id:
            if old is not None:
                self._chats_of[old].discard(chat_id)
            self._business_of[chat_id] = business_id
            self._chats_of.setdefault(business_id, set()).add(chat_id)

    def _scan(self) -> None:
        if self._scanned:
            return
        f = self._file
        f.seek(0)
        offset = 0
        bad: list[tuple[int, int, bytes, str]] = []
        for number, raw in enumerate(f, 1):
            try:
                line = _line_decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if not raw.endswith(b"\n"):
                    # A torn last line: its page is not complete, fetch it again.
                    log.info(
                        "%s: cut off a torn last line %d (%d bytes at byte %d)",
                        os.fspath(self.path), number, len(raw), offset,
                    )  # fmt: skip
                    break
                if raw.strip():
                    bad.append((number, offset, raw, str(exc)))
                offset += len(raw)
                continue
            if not raw.endswith(b"\n"):
                # Whole but for its newline (a write cut just before it): keep it.
                os.write(f.fileno(), b"\n")
                raw += b"\n"
            offset += len(raw)
            kind = line.kind
            if kind == "message":
                if line.message_id > self._last_ids.get(line.chat_id, 0):
                    self._last_ids[line.chat_id] = line.message_id
            elif kind == "chat":
                self._chats[line.chat_id] = raw.rstrip(b"\n")
            elif kind == "synced" and line.updated_at is not None:
                self._synced[line.chat_id] = (line.updated_at, line.synced_at or 0.0)
            else:
                continue
            self._own(line.business_id, line.chat_id)
        f.truncate(offset)
        for number, at, raw, error in bad:
            self._quarantine(number, at, raw, error)
        f.seek(0, os.SEEK_END)
        self._scanned = True

    def _quarantine(self, number: int, offset: int, raw: bytes, error: str) -> None:
        """Move a bad line to ``<path>.rejected``; a placeholder keeps its place."""
        rejected = f"{os.fspath(self.path)}.rejected"
        with open(rejected, "ab") as out:  # first the copy, durably
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        size = len(raw) - 1
        filler = _PLACEHOLDER if size >= len(_PLACEHOLDER) else b""
        # Not through our descriptor: with O_APPEND, Linux pwrite appends.
        fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            os.pwrite(fd, filler.ljust(size), offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.rejected.append(number)
        log.warning(
            "%s line %d (byte %d) is not a valid line (%s): moved to %s",
            os.fspath(self.path), number, offset, error, rejected,
        )  # fmt: skip

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """Checkpoints from the scan of the file, by chat id."""
        return await self._run(self._load_state, business_id)

    def _load_state(self, business_id: int) -> dict[int, ChatState]:
        self._scan()
        states = {}
        for chat_id in self._chats_of.get(business_id, ()):
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
                self._own(business_id, chat.chat_id)
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
        self._own(business_id, chat_id)

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
