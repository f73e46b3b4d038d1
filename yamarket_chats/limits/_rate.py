"""`RateLimit`, the client's default per-method limits, and their bounds.

The defaults come from the table of operations (`yamarket_chats._operations`),
so a method has its hourly limit where it is declared, once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard

from aiolimiter import AsyncLimiter

from .._operations import METHODS, OPERATIONS
from ..errors import InvalidRequestError

__all__ = ["DEFAULT_LIMITS", "METHODS", "RateLimit"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`amount` requests per `period_seconds`, per business id and method.

    `burst` is how many requests may go out back to back after a quiet spell;
    by default a minute's worth (at least 1), since the API asks for load
    spread over the hour rather than the whole hourly amount at once.
    """

    amount: int
    period_seconds: float = 3600.0
    burst: int | None = None

    def __post_init__(self) -> None:
        # InvalidRequestError is a ValueError; bounds keep the bucket's float math finite.
        amount, period, burst = self.amount, self.period_seconds, self.burst
        if not _is_int(amount) or not 1 <= amount <= _MAX_AMOUNT:
            raise InvalidRequestError(
                f"RateLimit.amount must be an integer in 1..{_MAX_AMOUNT:_}, got {_show(amount)}"
            )
        if not _is_number(period) or not _MIN_PERIOD <= period <= _MAX_PERIOD:
            raise InvalidRequestError(
                f"RateLimit.period_seconds must be a number of seconds in "
                f"{_MIN_PERIOD:g}..{_MAX_PERIOD:g}, got {_show(period)}"
            )
        if burst is not None and (not _is_int(burst) or not 1 <= burst <= amount):
            raise InvalidRequestError(
                f"RateLimit.burst must be None or an integer in 1..amount ({amount}), "
                f"got {_show(burst)}"
            )

    @property
    def effective_burst(self) -> int:
        """The burst in use: `burst`, or one minute's worth of `amount`."""
        if self.burst is not None:
            return self.burst
        per_minute = math.ceil(self.amount * 60.0 / self.period_seconds)
        return max(1, min(self.amount, per_minute))

    def new_limiter(self) -> AsyncLimiter:
        """A bucket with this rate: `effective_burst` deep, refilling at `amount` per period."""
        burst = self.effective_burst
        return AsyncLimiter(burst, self.period_seconds * burst / self.amount)


_MAX_AMOUNT = 10**9
_MIN_PERIOD = 0.001
_MAX_PERIOD = 1e9


def _is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (``True`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite int or float (bool refused); huge ints are not finite floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _show(value: object) -> str:
    if type(value) in (int, float, bool, type(None)):
        return repr(value) if not (type(value) is int and abs(value) > 10**30) else "a huge int"
    return f"a value of type {type(value).__name__}"


DEFAULT_LIMITS: Mapping[str, RateLimit] = {
    name: RateLimit(op.hourly_limit) for name, op in OPERATIONS.items()
}
