"""One sync per sink: an exclusive OS lock on a file, held while the sink is open.

Two syncs writing one sink would race on its checkpoints (a JSONL file gets
every message twice). The lock is ``flock(2)``: it belongs to the open file,
so the kernel releases it when the holder closes the file or dies in any way
(SIGKILL, OOM, power loss), and a lock is never stale; nothing to clean up.
On Windows, ``msvcrt.locking`` on one byte far past the end of the file plays
the same part without blocking readers of the data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

from ..errors import SinkLockedError

__all__ = ["locked_error", "note_wait", "try_lock", "wait_lock"]

log = logging.getLogger("yamarket_chats.sinks")

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    _FAR = 2**62  # a byte no data file reaches: the lock never blocks reads

    def try_lock(fd: int) -> bool:
        """Take the lock of ``fd`` at once if it is free; False if another holds it."""
        os.lseek(fd, _FAR, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Take the lock of ``fd`` at once if it is free; False if another holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def wait_lock(fd: int, timeout: float, stop: threading.Event) -> bool:
    """Try the lock until ``timeout`` seconds pass or ``stop`` is set; True once held."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not try_lock(fd):
        left = deadline - time.monotonic()
        if left <= 0 or stop.wait(min(delay, left)):
            return False
        delay = min(delay * 2, 0.2)
    return True


def locked_error(path: str | os.PathLike[str], fd: int, timeout: float) -> SinkLockedError:
    """The error for a sink whose lock another sync holds, naming the path and holder."""
    holder = _holder(fd)
    by = f" (pid {holder})" if holder else ""
    waited = f"; waited {timeout:g} s" if timeout > 0 else ""
    return SinkLockedError(
        f"{os.fspath(path)} is in use by another sync{by}{waited}. Its lock is released"
        " when that sync ends; pass lock_timeout (seconds) to wait for it"
    )


def note_wait(path: str | os.PathLike[str], fd: int, timeout: float) -> None:
    """Log (a warning: the sync stalls) that the sink waits for another sync's lock."""
    holder = _holder(fd)
    by = f" (pid {holder})" if holder else ""
    log.warning(
        "%s is in use by another sync%s; waiting up to %g s for its lock",
        os.fspath(path), by, timeout,
    )  # fmt: skip


def _holder(fd: int) -> int | None:
    """The pid holding an flock on ``fd``'s file, from /proc/locks (Linux), if known."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        st = os.fstat(fd)
        dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if fields[1] == "FLOCK" and fields[5] == dev and fields[4] != "-1":
                    return int(fields[4])
    return None
