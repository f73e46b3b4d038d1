"""Reading a JSONL sink's file back: its checkpoints, and the repair of damaged lines.

The file is the JSONL sink's only checkpoint, so a damaged line must neither
stop the sink (issue 14.4) nor lose a message nor let one be written twice:

* a torn last line (a crash mid-write) is cut off: its page is fetched again;
* a torn write glued to the next line keeps that line; the torn bytes go
  (were they a whole message line, its chat is fetched again, as below);
* any other invalid line is replaced in place by ``{"kind":"rejected"}``
  padded with spaces to the same length, or by spaces alone if it is shorter
  (so the file stays JSON Lines and nothing after it moves). If it still
  shows which chat's message it held, that chat is fetched again from the
  last message before it, and the messages already in the file are not
  written twice.

Whatever is removed is first appended to ``<path>.rejected`` (and synced),
and each repair is logged as a WARNING with its line number.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import IO, Any

import msgspec

log = logging.getLogger("yamarket_chats.sinks")

_PLACEHOLDER = b'{"kind":"rejected"}'
_BAD = (msgspec.DecodeError, msgspec.ValidationError)


class _Line(msgspec.Struct, rename="camel"):
    """The fields of a line that the checkpoint scan needs."""

    kind: str = ""
    business_id: int = 0
    chat_id: int = 0
    message_id: int = 0
    updated_at: str | None = None
    synced_at: float | None = None


_decode = msgspec.json.Decoder(_Line).decode


@dataclasses.dataclass
class Index:
    """What a JSONL sink knows of its file."""

    last_ids: dict[int, int] = dataclasses.field(default_factory=dict)  #: highest message id
    synced: dict[int, tuple[str, float]] = dataclasses.field(default_factory=dict)
    #: hash() of each chat's last chat line, to append a chat only when it changed:
    #: a 64-bit hash, not the line itself, keeps 300k chats in 10 MB, not 100.
    chats: dict[int, int] = dataclasses.field(default_factory=dict)
    business_of: dict[int, int] = dataclasses.field(default_factory=dict)
    chats_of: dict[int, set[int]] = dataclasses.field(default_factory=dict)  #: by business
    #: Chats fetched again after a damaged line: ids of their messages already in the file.
    present: dict[int, set[int]] = dataclasses.field(default_factory=dict)
    rejected: list[int] = dataclasses.field(default_factory=list)  #: repaired line numbers

    def own(self, business_id: int, chat_id: int) -> None:
        """Record that ``chat_id`` belongs to ``business_id`` (chats may move)."""
        old = self.business_of.get(chat_id)
        if old != business_id:
            if old is not None:
                self.chats_of[old].discard(chat_id)
            self.business_of[chat_id] = business_id
            self.chats_of.setdefault(business_id, set()).add(chat_id)


@dataclasses.dataclass(frozen=True)
class _Repair:
    number: int  # 1-based line number
    offset: int  # of the line in the file
    raw: bytes  # the whole line, with its newline
    cut: int  # bytes of it that go (all but the newline, or a torn prefix)
    error: str
    chat: int | None  # the chat whose message it held, if known


def scan(file: IO[bytes], path: str) -> Index:
    """Read ``file`` (open for appending) into an `Index`, repairing it as above."""
    index = Index()
    damaged: dict[int, int] = {}  # chat id -> highest message id before its first damage
    repairs: list[_Repair] = []
    last_ids, synced, business_of = index.last_ids, index.synced, index.business_of
    file.seek(0)
    offset = 0
    for number, raw in enumerate(file, 1):
        at, offset = offset, offset + len(raw)
        try:
            line = _decode(raw)
        except _BAD as exc:
            if not raw.endswith(b"\n"):
                # A torn last line: its page is not complete, fetch it again.
                log.info("%s: cut off a torn last line %d (%d bytes)", path, number, len(raw))
                offset = at
                break
            if not raw.strip():
                continue
            glued = _glued(raw)
            if glued is None:
                chat = _message_of(raw)
                if chat is not None:
                    damaged.setdefault(chat[1], index.last_ids.get(chat[1], 0))
                    index.own(*chat)
                chat_id = chat[1] if chat else None
                repairs.append(_Repair(number, at, raw, len(raw) - 1, str(exc), chat_id))
                continue
            cut, line = glued
            # The bytes before it are torn, or a whole message line that lost
            # its newline: then its chat is fetched again, as below.
            chat = _message_of(raw[:cut])
            if chat is not None:
                damaged.setdefault(chat[1], index.last_ids.get(chat[1], 0))
                index.own(*chat)
            repairs.append(_Repair(number, at, raw, cut, str(exc), chat[1] if chat else None))
            raw = raw[cut:]
        if not raw.endswith(b"\n"):
            # Whole but for its newline (a write cut just before it): keep it.
            os.write(file.fileno(), b"\n")
            raw += b"\n"
            offset += 1
        kind, chat_id = line.kind, line.chat_id
        if kind == "message":
            if line.message_id > last_ids.get(chat_id, 0):
                last_ids[chat_id] = line.message_id
            if chat_id in damaged:
                index.present.setdefault(chat_id, set()).add(line.message_id)
        elif kind == "chat":
            index.chats[chat_id] = hash(raw.rstrip(b"\n"))
        elif kind == "synced" and line.updated_at is not None:
            synced[chat_id] = (line.updated_at, line.synced_at or 0.0)
        else:
            continue
        if business_of.get(chat_id) != line.business_id:  # inline `own`: every line
            index.own(line.business_id, chat_id)
    file.truncate(offset)
    for repair in repairs:
        _repair(file, path, repair)
        index.rejected.append(repair.number)
    for chat_id, resume in damaged.items():
        # Walk the chat again from before the damage (and not skip it as unchanged).
        if resume:
            index.last_ids[chat_id] = resume
        else:
            index.last_ids.pop(chat_id, None)
        index.synced.pop(chat_id, None)
    file.seek(0, os.SEEK_END)
    return index


def _glued(raw: bytes) -> tuple[int, _Line] | None:
    """(length of the torn prefix, the line after it) if ``raw`` is a torn write + a line."""
    start = raw.rfind(b'{"kind":')
    if start > 0:
        try:
            return start, _decode(raw[start:])
        except _BAD:
            pass
    return None


def _message_of(raw: bytes) -> tuple[int, int] | None:
    """(business id, chat id) of a message line that is JSON but not a valid line."""
    try:
        value: Any = msgspec.json.decode(raw)
    except _BAD:
        return None
    if isinstance(value, dict) and value.get("kind") == "message":
        business, chat = value.get("businessId"), value.get("chatId")
        if type(business) is int and type(chat) is int:
            return business, chat
    return None


def _repair(file: IO[bytes], path: str, repair: _Repair) -> None:
    rejected = f"{path}.rejected"
    removed = repair.raw[: repair.cut]
    with open(rejected, "ab") as out:  # first the copy, durably
        out.write(removed.rstrip(b"\n") + b"\n")
        out.flush()
        os.fsync(out.fileno())
    whole = repair.cut == len(repair.raw) - 1
    filler = _PLACEHOLDER if whole and repair.cut >= len(_PLACEHOLDER) else b""
    # Not through the sink's descriptor: with O_APPEND, Linux pwrite appends.
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.pwrite(fd, filler.ljust(repair.cut), repair.offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    if repair.chat is not None:
        outcome = f"chat {repair.chat} is fetched again from before it"
        if not whole:
            outcome += "; the line glued to it is kept"
    elif not whole:
        outcome = "the line glued to them is kept"
    else:
        outcome = "if it held a message, that message is only there now"
    log.warning(
        "%s line %d (byte %d) is not a valid line (%s): moved %d bytes to %s; %s",
        path, repair.number, repair.offset, repair.error, len(removed), rejected, outcome,
    )  # fmt: skip
