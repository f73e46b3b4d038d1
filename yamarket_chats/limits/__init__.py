"""Client-side rate limits: token buckets, the server's own count, parallel slots.

Three things decide when a request may go out:

1. a token bucket per (business id, method) from aiolimiter, which spreads the
   load at the configured rate with a small burst;
2. the server's view of the same quota, read from the ``X-RateLimit-Resource-*``
   headers of every answer: when the server says the window is spent (another
   process used it, a restart forgot it), requests wait for ``-Until`` instead
   of running into a 420;
3. a cap per business id on requests in flight (the API answers 420 beyond 4).
   Waiting for quota never holds a slot.

The rules live once, in the in-process store (`_local`, the reference model);
the Redis store (`_redis_store`, for `yamarket_chats.redis_limits`) runs the
same rules in Lua. One engine (`_engine`) queues, sleeps and keeps deadlines
over either store. Importing this package never imports redis.
"""

from __future__ import annotations

from ._headers import server_count
from ._local import Limits
from ._protocol import NOT_SENT, Limiter, WaitTooLong
from ._rate import DEFAULT_LIMITS, METHODS, RateLimit
from ._rate import _is_int as _is_int  # for the argument checks of `_validate`

__all__ = [
    "DEFAULT_LIMITS",
    "METHODS",
    "NOT_SENT",
    "Limiter",
    "Limits",
    "RateLimit",
    "WaitTooLong",
    "server_count",
]
