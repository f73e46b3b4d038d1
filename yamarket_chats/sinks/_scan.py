"""Reading a JSONL sink's file back: its checkpoints, and the repair of damaged lines.

The file is the JSONL sink's only checkpoint, so a damaged line must neither
stop the sink (issue 14.4) nor lose a message nor let one be written twice.
`scan` reads the whole file first (`_Reading.read`, each line classified by
`_Reading._damaged` when it does not decode), then repairs:

* a torn last line (a crash mid-write) is cut off: its page is fetched again
  (`_cut_torn`);
* a torn write glued to the next line keeps that line; the torn bytes go
  (`_glued`; were they a whole message line, its chat is fetched again, as
  below);
* any other invalid line (not JSON, not a valid line, not UTF-8) is replaced
  in place by ``{"kind":"rejected"}`` padded with spaces to the same length,
  or by spaces alone if it is shorter (so the file stays JSON Lines and
  nothing after it moves; `_blank`). If it still shows which chat's message
  it held (from the JSON, or else from the fixed start of a message line:
  `_message_of`), that chat is fetched again from the last message before
  it, and the messages already in the file are not written twice
  (`_resume`).

That re-fetch is itself durable: before the line is blanked, a marker
``{"kind":"rejected","businessId":B,"chatId":C,"refetchFrom":N}`` is
appended to the file (`_mark`). Until a ``synced`` line of that chat follows
the marker (the end of a complete walk), every scan resumes the chat from
``N``, however many runs end (401, network down, SIGKILL) before the chat is
walked (`_Reading.to_resume`).

Whatever is removed is first appended to ``<path>.rejected`` (and synced;
`_reject`), and each repair is logged as a WARNING with its line number.

A file that is not a sink's is refused (`InvalidRequestError` naming it)
before anything in it changes: one whose first non-blank line does not start
like a sink line (`_check_first`), or with more than `MAX_DAMAGED_LINES`
damaged lines making up more than `MAX_DAMAGED_SHARE` of its lines
(`_Reading.refuse_if_foreign`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import IO, Any

import msgspec

from ..errors import InvalidRequestError

log = logging.getLogger("yamarket_chats.sinks")

#: A file with more damaged lines than this ...
MAX_DAMAGED_LINES = 3
#: ... that are also more than this share of its lines is refused, not repaired.
MAX_DAMAGED_SHARE = 0.01

_PLACEHOLDER = b'{"kind":"rejected"}'
_START = b'{"kind":"'  # how every line a sink writes starts
_BAD = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)
#: The fixed start of a message line: its chat, even when the rest is damaged.
_MESSAGE_HEAD = re.compile(rb'\{"kind":"message","businessId":(-?\d+),"chatId":(-?\d+),')


class _Line(msgspec.Struct, rename="camel"):
    """The fields of a line that the checkpoint scan needs."""

    kind: str = ""
    business_id: int = 0
    chat_id: int = 0
    message_id: int = 0
    updated_at: str | None = None
    synced_at: float | None = None
    refetch_from: int = 0  # of a "rejected" marker


_decode_json = msgspec.json.Decoder(_Line).decode


def _decode(raw: bytes) -> _Line:
    line = _decode_json(raw)
    if not raw.isascii():
        raw.decode()  # strict JSON readers downstream refuse invalid UTF-8
    return line


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
    chat: tuple[int, int] | None  # (business, chat) whose message it held, if known


def check_start(file: IO[bytes], path: str) -> None:
    """`InvalidRequestError` if ``file`` is not empty and does not start like a sink's."""
    file.seek(0)
    head = b""
    while True:
        chunk = file.read(65536)
        if not chunk:
            break
        head = (head + chunk).lstrip()
        if len(head) >= len(_START):
            break
    _check_first(head[: len(_START)], path)


def _check_first(raw: bytes, path: str) -> None:
    start = raw.lstrip()[: len(_START)]
    torn = len(start) < len(_START)  # a file holding only the start of a first line
    if not (_START.startswith(start) if torn else start == _START):
        raise InvalidRequestError(
            f"{path} is not a JSONL sink file: its first line does not start with"
            f" {_START.decode()!r}; refusing to write to it (pass the path of a sink's"
            " file, or of a new one)"
        )


def scan(file: IO[bytes], path: str) -> Index:
    """Read ``file`` (open for appending) into an `Index`, repairing it as above.

    Nothing in the file changes until all of it is read and judged a sink's.
    """
    reading = _Reading(path)
    reading.read(file)
    reading.refuse_if_foreign()
    _cut_torn(file, reading)
    if reading.repairs:
        _repair(file, reading)
    marked = reading.to_resume()
    if marked:
        _resume(file, reading.index, marked)
    file.seek(0, os.SEEK_END)
    return reading.index


class _Reading:
    """One pass over the file: what its lines say, and the damage found in it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.index = Index()
        self.lines = 0  # non-blank lines read
        self.end = 0  # where the file's kept part ends
        self.torn: tuple[int, bytes] | None = None  # (number, bytes) of a torn last line
        self.newline = False  # the last line lost only its newline: it is kept
        self.repairs: list[_Repair] = []
        self.damaged: dict[int, tuple[int, int]] = {}  # chat -> (business, resume), new damage
        self.marked: dict[int, int] = {}  # chat -> resume, from its unresolved markers
        # chat -> lowest resume of its markers: after a re-fetch the file holds its
        # messages out of order, so the highest id before a damaged line may be
        # past it; the message it held is above the marker's resume, though.
        self.floors: dict[int, int] = {}

    def read(self, file: IO[bytes]) -> None:
        """Read every line into the index; a damaged one into `repairs`, a torn end into `torn`."""
        file.seek(0)
        offset = 0
        for number, raw in enumerate(file, 1):
            at, offset = offset, offset + len(raw)
            if self.lines == 0 and raw.strip():
                _check_first(raw, self.path)
            try:
                line = _decode(raw)
            except _BAD as exc:
                if not raw.endswith(b"\n"):
                    # A torn last line: its page is not complete, fetch it again.
                    self.torn, offset = (number, raw), at
                    break
                kept = self._damaged(number, at, raw, str(exc))
                if kept is None:
                    continue
                line, raw = kept
            else:
                self.lines += 1
            if not raw.endswith(b"\n"):
                self.newline = True  # whole but for its newline (a write cut just before it)
                raw += b"\n"
            self._record(line, raw)
        self.end = offset

    def _damaged(self, number: int, at: int, raw: bytes, error: str) -> tuple[_Line, bytes] | None:
        """A whole line that does not decode: blank, a torn write + a line, or invalid.

        Returns the glued line to keep (and its bytes), if there is one.
        """
        if not raw.strip():
            return None
        self.lines += 1
        glued = _glued(raw)
        # What goes: all but the newline, or the torn bytes before a glued line.
        cut = len(raw) - 1 if glued is None else glued[0]
        # A whole message line, or one that lost its newline and had the next
        # glued to it: its chat is fetched again.
        chat = _message_of(raw[:cut])
        if chat is not None:
            self.damaged.setdefault(chat[1], (chat[0], self._resume_of(chat[1])))
        self.repairs.append(_Repair(number, at, raw, cut, error, chat))
        return None if glued is None else (glued[1], raw[cut:])

    def _resume_of(self, chat_id: int) -> int:
        """Where a chat with a damaged line resumes: below any message it held."""
        return min(self.index.last_ids.get(chat_id, 0), self.floors.get(chat_id, 2**63))

    def _record(self, line: _Line, raw: bytes) -> None:
        """Put what a valid line says into the index (``raw`` ends with its newline)."""
        index = self.index
        kind, chat_id = line.kind, line.chat_id
        if kind == "message":
            if line.message_id > index.last_ids.get(chat_id, 0):
                index.last_ids[chat_id] = line.message_id
        elif kind == "chat":
            index.chats[chat_id] = hash(raw.rstrip(b"\n"))
        elif kind == "synced" and line.updated_at is not None:
            index.synced[chat_id] = (line.updated_at, line.synced_at or 0.0)
            self.marked.pop(chat_id, None)  # walked to its end after the marker
        elif kind == "rejected" and chat_id:
            resume = line.refetch_from
            self.marked[chat_id] = min(self.marked.get(chat_id, resume), resume)
            self.floors[chat_id] = min(self.floors.get(chat_id, resume), resume)
            if chat_id not in index.business_of:
                index.own(line.business_id, chat_id)
            return
        else:
            return
        if index.business_of.get(chat_id) != line.business_id:  # inline `own`: every line
            index.own(line.business_id, chat_id)

    def refuse_if_foreign(self) -> None:
        """`InvalidRequestError` if too many lines are damaged for a sink's file."""
        repairs, lines = self.repairs, self.lines
        if len(repairs) > MAX_DAMAGED_LINES and len(repairs) > MAX_DAMAGED_SHARE * lines:
            shown = ", ".join(str(r.number) for r in repairs[:5])
            raise InvalidRequestError(
                f"{self.path} does not look like a JSONL sink file: {len(repairs)} of its {lines}"
                f" lines are not valid sink lines (lines {shown}"
                f"{', ...' if len(repairs) > 5 else ''}); refusing to repair it (at most"
                f" {MAX_DAMAGED_LINES} lines or {MAX_DAMAGED_SHARE:.0%} are). Move it aside"
                " or pass another path"
            )

    def to_resume(self) -> dict[int, int]:
        """Chat -> resume point, for every chat with unresolved damage (old markers and new)."""
        marked, index = self.marked, self.index
        for chat_id, (business_id, resume) in self.damaged.items():
            if chat_id not in index.business_of:
                index.own(business_id, chat_id)
            marked[chat_id] = min(marked.get(chat_id, resume), resume)
        return marked


def _cut_torn(file: IO[bytes], reading: _Reading) -> None:
    """Cut off a torn last line (copied to ``.rejected`` first); restore a lost newline."""
    path = reading.path
    if reading.torn is not None:
        number, torn = reading.torn
        _reject(path, [torn])
        log.warning(
            "%s: cut off a torn last line %d (%d bytes, copied to %s.rejected): its page"
            " is fetched again",
            path, number, len(torn), path,
        )  # fmt: skip
    file.truncate(reading.end)
    if reading.newline:
        os.write(file.fileno(), b"\n")


def _repair(file: IO[bytes], reading: _Reading) -> None:
    """Copy the damaged bytes to ``.rejected``, mark their chats, then blank them in place."""
    path, index = reading.path, reading.index
    _reject(path, [r.raw[: r.cut] for r in reading.repairs])
    _mark(file, reading.damaged)
    for repair in reading.repairs:
        _blank(path, repair)
        index.rejected.append(repair.number)


def _resume(file: IO[bytes], index: Index, marked: dict[int, int]) -> None:
    """Walk each chat in ``marked`` again from its resume point, never writing one twice."""
    present: dict[int, set[int]] = {chat_id: set() for chat_id in marked}
    file.seek(0)
    for raw in file:  # a second pass, only when damage is unresolved
        if b'"message"' not in raw:
            continue
        try:
            line = _decode(raw)
        except _BAD:
            continue
        ids = present.get(line.chat_id)
        if ids is not None and line.kind == "message" and line.message_id > marked[line.chat_id]:
            ids.add(line.message_id)
    for chat_id, resume in marked.items():
        if resume:
            index.last_ids[chat_id] = resume
        else:
            index.last_ids.pop(chat_id, None)
        index.synced.pop(chat_id, None)  # and not skip it as unchanged
        if present[chat_id]:
            index.present[chat_id] = present[chat_id]


def _glued(raw: bytes) -> tuple[int, _Line] | None:
    """(length of the torn prefix, the line after it) if ``raw`` is a torn write + a line."""
    start = raw.rfind(_START)
    if start > 0:
        try:
            return start, _decode(raw[start:])
        except _BAD:
            pass
    return None


def _message_of(raw: bytes) -> tuple[int, int] | None:
    """(business id, chat id) of a damaged message line, if it still shows them."""
    head = _MESSAGE_HEAD.match(raw)
    if head is not None:
        return int(head[1]), int(head[2])
    try:
        value: Any = msgspec.json.decode(raw)
    except _BAD:
        return None
    if isinstance(value, dict) and value.get("kind") == "message":
        business, chat = value.get("businessId"), value.get("chatId")
        if type(business) is int and type(chat) is int:
            return business, chat
    return None


def _reject(path: str, removed: list[bytes]) -> None:
    """Append what is removed to ``<path>.rejected``, durably."""
    with open(f"{path}.rejected", "ab") as out:
        out.write(b"".join(r.rstrip(b"\n") + b"\n" for r in removed))
        out.flush()
        os.fsync(out.fileno())


def _mark(file: IO[bytes], damaged: dict[int, tuple[int, int]]) -> None:
    """Append a durable marker for each damaged chat: fetch it again from there."""
    if not damaged:
        return
    marks = b"".join(
        b'{"kind":"rejected","businessId":%d,"chatId":%d,"refetchFrom":%d}\n'
        % (business_id, chat_id, resume)
        for chat_id, (business_id, resume) in damaged.items()
    )
    fd = file.fileno()  # O_APPEND
    rest = memoryview(marks)
    while rest:
        rest = rest[os.write(fd, rest) :]
    os.fsync(fd)


def _blank(path: str, repair: _Repair) -> None:
    """Overwrite the bytes that go with the placeholder or spaces, durably; log it."""
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
        outcome = f"chat {repair.chat[1]} is fetched again from before it"
        if not whole:
            outcome += "; the line glued to it is kept"
    elif not whole:
        outcome = "the line glued to them is kept"
    else:
        outcome = "if it held a message, that message is only there now"
    log.warning(
        "%s line %d (byte %d) is not a valid line (%s): moved %d bytes to %s.rejected; %s",
        path, repair.number, repair.offset, repair.error, repair.cut, path, outcome,
    )  # fmt: skip
