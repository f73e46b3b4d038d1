"""The reserve: how much of the client's quota a notification fetcher may draw.

A fetch triggered by a notification spends the quota of the user's own calls
of the same method and business (``get_chat_message``, ``get_chat``): one
client bucket per (business, method). A fetcher therefore draws from a
sub-bucket of its own, at ``share`` of the method's rate *and* burst, taken
before the client call. Its draw on the client's bucket can then never exceed
that sub-bucket's level (the client's bucket drains faster), so the rest of
the burst, and of the rate, is always there for the user's own calls.

The method's limit is the client's own: :data:`~yamarket_chats.DEFAULT_LIMITS`
with the client's ``limits=`` overrides, or a ``RedisLimiter``'s ``limits=``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from ..client import ChatsClient
from ..errors import InvalidRequestError
from ..limits import DEFAULT_LIMITS, RateLimit

__all__ = [
    "DEFAULT_FETCH_SHARE",
    "FETCH_METHODS",
    "check_share",
    "client_limit",
    "share_limits",
    "share_of",
]

#: The share of each method's bucket (rate and burst) a fetcher may draw by
#: default: half, so forged events leave at least the other half to your calls.
DEFAULT_FETCH_SHARE: Final = 0.5
#: The client methods a fetcher calls, each with a sub-bucket of its own.
FETCH_METHODS: Final = ("get_chat", "get_chat_message")

# Products like 100 * 0.29 = 28.999999999999996 mean 29 requests, not 28.
_EPSILON: Final = 1e-9


def check_share(value: object) -> float:
    """``share`` as a float: a finite number greater than 0 and less than 1."""
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int past float's range: certainly not below 1
            number = math.inf
    if not 0 < number < 1:  # NaN fails too
        small = isinstance(value, float) or (isinstance(value, int) and abs(value) < 10**30)
        shown = repr(value) if small else f"a value of type {type(value).__name__}"
        raise InvalidRequestError(
            "share must be a number greater than 0 and less than 1 (the rest of each"
            f" method's bucket is the reserve for your own calls), got {shown}"
        )
    return number


def client_limit(client: ChatsClient, method: str) -> RateLimit:
    """The bucket ``client`` keeps for ``method`` (per business), as configured.

    Read from the client's limiter: the in-process ``Limits`` and
    ``RedisLimiter`` both keep the merged ``{**DEFAULT_LIMITS, **limits}``
    map on their store. A method without a client bucket (``None``) and a
    limiter of another kind fall back to :data:`DEFAULT_LIMITS`, the API's own
    quota, which the server still enforces.
    """
    # The limits package has no public accessor for a method's limit (yet);
    # this is the one place that looks inside, and it degrades to the default.
    store = getattr(getattr(client, "_limits", None), "_store", None)
    configured = getattr(store, "_limits", None)
    if isinstance(configured, Mapping):
        limit = configured.get(method)
        if isinstance(limit, RateLimit):
            return limit
    return DEFAULT_LIMITS[method]


def share_of(limit: RateLimit, share: float, method: str) -> RateLimit:
    """``share`` of ``limit``'s rate and burst; at least one request of burst.

    Raises ``InvalidRequestError`` naming ``share`` and its floor for this
    method when ``share`` of the burst is less than one request.
    """
    burst = limit.effective_burst
    # Never the whole burst, whatever the rounding: at least one is the reserve's.
    own = min(math.floor(burst * share + _EPSILON), burst - 1)
    if own < 1:
        raise InvalidRequestError(
            f"share must be at least 1/{burst} with this client's {method} limit"
            f" ({limit.amount} per {limit.period_seconds:g} s, burst {burst}), got {share!r}:"
            " less than one request of its burst"
        )
    amount = limit.amount * share
    if abs(amount - round(amount)) < _EPSILON and own <= round(amount) < limit.amount:
        return RateLimit(round(amount), limit.period_seconds, burst=own)
    # A fractional hourly amount: the same rate as the whole amount over a longer period.
    return RateLimit(limit.amount, limit.period_seconds / share, burst=own)


def share_limits(client: ChatsClient, share: float) -> dict[str, RateLimit]:
    """The sub-bucket of each fetch method: ``share`` of the client's limit for it."""
    return {
        method: share_of(client_limit(client, method), share, method) for method in FETCH_METHODS
    }
