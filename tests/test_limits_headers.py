"""Reading the server's count from the X-RateLimit-Resource-* headers.

The reset comes as seconds from now on the server's clock, so no caller ever
compares two clocks."""

from __future__ import annotations

import time
from email.utils import formatdate

from yamarket_chats.limits import server_count


def headers(remaining: str, until: float, date: float | None) -> dict[str, str]:
    out = {
        "X-RateLimit-Resource-Remaining": remaining,
        "X-RateLimit-Resource-Until": formatdate(until, usegmt=True),
    }
    if date is not None:
        out["Date"] = formatdate(date, usegmt=True)
    return out


def test_until_is_moved_onto_our_clock_when_the_server_clock_is_off() -> None:
    now = time.time()
    # the server's clock runs 100 s ahead: its reset in 10 s reads now + 110
    count = server_count(headers("7", now + 110, now + 100))
    assert count is not None
    remaining, reset_in = count
    assert remaining == 7
    assert abs(reset_in - 10) <= 1.5  # Date and Until have 1 s resolution


def test_a_skew_within_dates_resolution_is_left_alone() -> None:
    now = time.time()
    count = server_count(headers("3", now + 30, now))
    assert count is not None and abs(count[1] - 30) <= 1.0
    count = server_count(headers("3", now + 30, None))
    assert count is not None and abs(count[1] - 30) <= 1.0


def test_missing_or_malformed_headers_teach_nothing() -> None:
    assert server_count({}) is None
    assert server_count(headers("many", time.time(), None)) is None
    assert (
        server_count({**headers("1", time.time(), None), "X-RateLimit-Resource-Until": "?"}) is None
    )
