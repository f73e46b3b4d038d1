"""Reading files for `send_file_to_chat`, with the API's size limits checked first.

A path is opened without blocking: ``open()`` of a FIFO nobody writes to
would otherwise wait forever in a thread that cancelling cannot free (and
``asyncio.run()`` would never return). Pipes, terminals and other streams are
then read on the event loop, so a cancelled send stops reading at once.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from typing import IO, Final, Union

from . import _validate
from ._validate import MAX_FILE_BYTES
from .errors import InvalidRequestError

__all__ = ["MAX_FILE_BYTES", "FileInput", "read_upload"]

FileInput = Union[str, "os.PathLike[str]", bytes, IO[bytes]]

# Without O_NONBLOCK (Windows) there are no FIFOs to hang on: read in a thread.
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_READ_AT_MOST: Final = MAX_FILE_BYTES + 1  # one byte more tells "over the limit"


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | _NONBLOCK)


def _is_stream(mode: int) -> bool:
    return bool(_NONBLOCK) and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode))


def _open_path(path: str, name: str) -> tuple[bytes, IO[bytes] | None]:
    """Read a regular file whole, or return a stream's first bytes and the open stream.

    A stream with nothing to read and no writer (a FIFO nobody opened for
    writing, ``/dev/null``) reads as empty at once instead of waiting.
    """
    f = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115 - closed below or by the caller
    keep_open = False
    try:
        info = os.fstat(f.fileno())
        if _is_stream(info.st_mode):
            try:
                head = os.read(f.fileno(), _READ_AT_MOST)
            except BlockingIOError:  # a writer is there but has not written yet
                head = b""
            else:
                if not head:  # end of file already: no writer, nothing written
                    raise InvalidRequestError(
                        f"file {name!r} is a pipe or device with nothing to read (no writer "
                        "has it open); this library refuses empty files; send 1 byte to 5 MiB"
                    )
            keep_open = len(head) < _READ_AT_MOST  # the caller reads the rest and closes it
            return head, f if keep_open else None
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequestError(
                f"file {name!r} is not a regular file, a pipe or a terminal; cannot send it"
            )
        _validate.file_size(info.st_size, repr(name))
        return f.read(_READ_AT_MOST), None
    finally:
        if not keep_open:
            f.close()


async def _read_stream_on_loop(stream: IO[bytes], limit: int) -> bytes:
    """Read up to `limit` bytes or end of file from a pipe, on the event loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)  # never pauses before `limit` is read
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream
        )
    except (NotImplementedError, ValueError):  # a loop without pipe support
        return await asyncio.to_thread(_read_file_object, stream, limit)
    try:
        return await reader.readexactly(limit)
    except asyncio.IncompleteReadError as end:
        return end.partial
    finally:
        transport.close()  # closes `stream` too


def _read_file_object(stream: IO[bytes], limit: int = _READ_AT_MOST) -> bytes:
    try:
        data = stream.read(limit)
    except (OSError, ValueError) as exc:  # closed, not readable, a socket timeout...
        if isinstance(exc, InvalidRequestError):
            raise
        raise InvalidRequestError(
            f"file object cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(data, bytes):
        raise InvalidRequestError("file must be opened in binary mode ('rb')")
    return data


def _name_of(source: object, what: str) -> str:
    """A file name taken from a path or a file object's ``name``, checked like `filename`.

    File systems allow names that cannot go in the upload's header (a
    newline, a byte that is not UTF-8): such a name is refused with a hint,
    not sent to fail at request time.
    """
    if isinstance(source, (str, bytes)):
        name = os.path.basename(os.fsdecode(source))
        if name:
            try:
                checked = _validate.header_text("filename", name, _validate.MAX_FILENAME_CHARS)
            except InvalidRequestError as exc:
                raise InvalidRequestError(
                    f"filename taken from the {what} cannot be sent ({exc}); pass filename="
                ) from None
            return checked or "file"
    return "file"


async def read_upload(
    file: FileInput, filename: str | None, content_type: str | None
) -> tuple[bytes, str, str]:
    """Return (content, filename, content type) of a file to send.

    At most 5 MiB and one byte are ever read, off the event loop, so a file
    over the limit is refused without reading it whole; the content is held
    in memory so that a retry after a 420 sends the same bytes again.
    """
    filename = _validate.header_text("filename", filename, _validate.MAX_FILENAME_CHARS)
    content_type = _validate.content_type(content_type)
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
        name = filename or "file"
    elif isinstance(file, (str, os.PathLike)):
        try:
            path = os.fsdecode(os.fspath(file))
        except TypeError:  # a PathLike whose __fspath__ gives neither str nor bytes
            raise InvalidRequestError("file is a PathLike that gives no path") from None
        name = filename or _name_of(path, "path")
        try:
            data, rest = await asyncio.to_thread(_open_path, path, name)
            if rest is not None:
                data += await _read_stream_on_loop(rest, _READ_AT_MOST - len(data))
        except (OSError, ValueError) as exc:
            if isinstance(exc, InvalidRequestError):
                raise
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise InvalidRequestError(f"cannot read file {path!r}: {reason}") from exc
    elif callable(getattr(file, "read", None)):
        data = await asyncio.to_thread(_read_file_object, file)
        name = filename or _name_of(getattr(file, "name", None), "file object's name")
    else:
        raise InvalidRequestError(
            f"file must be a path, bytes or a binary file object, got {type(file).__name__}"
        )
    _validate.file_size(len(data), repr(name))
    if content_type is None:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return data, name, content_type
