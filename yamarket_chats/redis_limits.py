"""Quotas shared by every worker through Redis (``pip install yamarket-chats[redis]``).

`RedisLimiter` is the limits engine (`yamarket_chats.limits`) over a store in
Redis: the same rules as the in-process `Limits`, run by a Lua script shipped
with the package, so that every worker on one Redis spends one quota. Each
(business id, method) has a bucket, the server's count and the requests in
flight; each business's parallel-request cap is a sorted set of leases that
expire, so a worker that dies never holds a slot for longer than
`lease_seconds`. A request costs one Redis round trip; see
`yamarket_chats.limits._redis_store` for how.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from ._extras import missing_extra

try:
    import redis.asyncio as redis
    from redis.exceptions import RedisError
except ModuleNotFoundError as error:
    raise missing_extra(error, "redis", __name__) from None

from . import _validate
from .errors import InvalidRequestError
from .limits import DEFAULT_LIMITS, RateLimit
from .limits._engine import Engine
from .limits._local import LocalStore
from .limits._redis_store import QuotaBackendError, RedisStore, _Lease

__all__ = ["QuotaBackendError", "RedisLimiter"]


class RedisLimiter(Engine[_Lease]):
    """Rate limits shared through Redis by every client that uses the same keys.

    :param redis_url: e.g. ``"redis://localhost:6379/0"``; or pass `client`,
        a ``redis.asyncio.Redis`` you own.
    :param limits: per-method overrides of :data:`DEFAULT_LIMITS`, as for
        `ChatsClient` (``None`` for a method: no shared bucket).
    :param max_concurrency: requests in flight per business id, over all
        workers together.
    :param prefix: namespace of the keys (``{prefix}:{business}:{method}:...``);
        the slots key's name is also the pub/sub channel announcing free slots.
    :param lease_seconds: how long a slot outlives a worker that died holding
        it; keep it above the client's request timeout.
    :param on_error: what a request does when Redis fails mid-run: ``"raise"``
        (default) fails it with `QuotaBackendError`; ``"local"`` falls back to
        in-process buckets, retrying Redis every 30 s. Redis unreachable at
        `start` always raises.
    :param local_fraction: the share of each quota and of `max_concurrency`
        one worker's fallback buckets allow while Redis is down (with
        ``on_error="local"``). Pick ``1/N`` for N workers, so that together
        they cannot overspend: each worker then runs at 1/N of the rate even
        when it is alone. The same rule holds without any Redis: N processes
        with plain `ChatsClient` each keep their own buckets, so give each
        ``limits`` of 1/N of every quota and ``max_concurrency`` of 4/N.

    Clocks: the workers' clocks are never compared with Redis's or with each
    other. Redis's ``TIME`` is the one clock of every bucket, lease and
    window; the server's reset is carried into Redis as a duration.

    Connections: requests use the client's pool; while a coroutine waits for
    a full parallel cap, the limiter holds one more connection subscribed to
    the businesses' slot channels (so the Redis user needs ``PUBLISH`` and
    ``SUBSCRIBE`` as well as ``EVALSHA``). If pub/sub fails, such waits
    re-check every second instead. `close` sends the finishes still queued.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: redis.Redis | None = None,
        limits: Mapping[str, RateLimit | None] | None = None,
        max_concurrency: int | None = 4,
        prefix: str = "yamarket_chats",
        lease_seconds: float = 30.0,
        on_error: Literal["raise", "local"] = "raise",
        local_fraction: float = 0.25,
    ) -> None:
        # The client's own rules (InvalidRequestError, a ValueError too): a
        # misspelt method in `limits` must not pass here either.
        if (redis_url is None) == (client is None):
            raise InvalidRequestError("pass exactly one of redis_url or client")
        if on_error not in ("raise", "local"):
            raise InvalidRequestError(f"on_error must be 'raise' or 'local', got {on_error!r}")
        if not 0 < _validate.seconds("local_fraction", local_fraction) <= 1:
            raise InvalidRequestError(f"local_fraction must be in (0, 1], got {local_fraction}")
        _validate.limits(limits)
        _validate.max_concurrency(max_concurrency)
        _validate.seconds("lease_seconds", lease_seconds)
        self._redis = client if client is not None else redis.Redis.from_url(str(redis_url))
        self._owns_redis = client is None
        self._where = _redacted(redis_url) if redis_url else "the given Redis client"
        self._prefix = prefix
        config = {**DEFAULT_LIMITS, **(limits or {})}
        cap = max_concurrency or 0
        fallback = LocalStore(
            {method: _scaled(rate, local_fraction) for method, rate in config.items()},
            max(1, int(cap * local_fraction)) if cap else None,
        )
        self._redis_store = RedisStore(
            self._redis,
            config,
            cap,
            prefix=prefix,
            lease_seconds=lease_seconds,
            on_error=on_error,
            fallback=fallback,
            where=self._where,
            on_free=self.wake,
        )
        super().__init__(self._redis_store)

    def __repr__(self) -> str:
        return f"RedisLimiter({self._where}, prefix={self._prefix!r})"

    async def start(self) -> None:
        """Check that Redis answers; raise `QuotaBackendError` if it does not."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise QuotaBackendError(f"Redis at {self._where} is unreachable: {exc}") from exc

    async def close(self) -> None:
        """Send the finishes still queued, then close what this limiter opened."""
        await self._redis_store.close()
        if self._owns_redis:
            await self._redis.aclose()


def _scaled(rate: RateLimit | None, fraction: float) -> RateLimit | None:
    if rate is None:
        return None
    return RateLimit(max(1, int(rate.amount * fraction)), rate.period_seconds)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
