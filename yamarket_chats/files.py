"""Reading files for `send_file_to_chat`, with the API's size limits checked first."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from typing import IO, Final, Union

from .errors import InvalidRequestError

MAX_FILE_BYTES: Final = 5 * 1024 * 1024

FileInput = Union[str, "os.PathLike[str]", bytes, IO[bytes]]


def _check_size(size: int, what: str) -> None:
    if size == 0:
        raise InvalidRequestError(f"file {what} is empty; the API needs 1 byte to 5 MiB")
    if size > MAX_FILE_BYTES:
        raise InvalidRequestError(
            f"file {what} is {size} bytes, over the API's limit of 5 MiB ({MAX_FILE_BYTES} bytes)"
        )


def _read_path(path: str) -> bytes:
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISREG(info.st_mode):  # a pipe has no size until it is read
            _check_size(info.st_size, repr(os.path.basename(path)))
        return f.read(MAX_FILE_BYTES + 1)


def _read_stream(stream: IO[bytes]) -> bytes:
    data = stream.read(MAX_FILE_BYTES + 1)
    if not isinstance(data, bytes):
        raise InvalidRequestError("file must be opened in binary mode ('rb')")
    return data


async def read_upload(
    file: FileInput, filename: str | None, content_type: str | None
) -> tuple[bytes, str, str]:
    """Return (content, filename, content type) of a file to send.

    At most 5 MiB and one byte are ever read, off the event loop, so a file
    over the limit is refused without reading it whole; the content is held
    in memory so that a retry after a 420 sends the same bytes again.
    """
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
        name = filename or "file"
    elif isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        try:
            data = await asyncio.to_thread(_read_path, path)
        except OSError as exc:
            raise InvalidRequestError(f"cannot read file {path!r}: {exc.strerror}") from exc
        name = filename or os.path.basename(path)
    elif hasattr(file, "read"):
        data = await asyncio.to_thread(_read_stream, file)
        name = filename or os.path.basename(str(getattr(file, "name", "") or "")) or "file"
    else:
        raise InvalidRequestError(
            f"file must be a path, bytes or a binary file object, got {type(file).__name__}"
        )
    _check_size(len(data), repr(name))
    if content_type is None:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return data, name, content_type
