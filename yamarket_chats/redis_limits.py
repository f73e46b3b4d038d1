"""Quotas shared by every worker through Redis (``pip install yamarket-chats[redis]``).

Each (business id, method) quota is a GCRA token bucket in Redis, and each
business's parallel-request cap is a sorted set of leases that expire, so a
worker that dies never holds a slot for longer than `lease_seconds`. One Lua
script takes everything a request needs in one atomic step (the server's
count, the bucket, a slot) or nothing, so waiting for quota never holds a slot.
Another gives the slot back and records the server's ``X-RateLimit-Resource-*``
count, so one worker's 420 slows all of them.

Redis's own clock (``TIME``) is the clock of every bucket, so workers on
several machines agree.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.exceptions import RedisError

from .errors import YandexMarketError
from .limits import DEFAULT_LIMITS, METHODS, Limits, RateLimit, server_count

__all__ = ["QuotaBackendError", "RedisLimiter"]

logger = logging.getLogger("yamarket_chats")

# Returns "0" when the request may go, "slot" when the business's parallel cap
# is full, or the seconds to wait for the server's window or the bucket.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local remaining = redis.call('HGET', KEYS[2], 'remaining')
if remaining then
  local reset_at = tonumber(redis.call('HGET', KEYS[2], 'reset_at'))
  if tonumber(remaining) <= 0 then
    if now < reset_at then return string.format('%.6f', reset_at - now) end
    redis.call('DEL', KEYS[2])
    remaining = nil
  end
end
local interval = tonumber(ARGV[1])
local new_tat = 0
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local allow_at = tat - tonumber(ARGV[2])
  if allow_at > now then return string.format('%.6f', allow_at - now) end
  new_tat = tat + interval
end
local cap = tonumber(ARGV[3])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= cap then return 'slot' end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
  redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[5]) * 1000))
end
if interval > 0 then
  redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
             math.ceil((new_tat - now) * 1000) + 1000)
end
if remaining then redis.call('HINCRBY', KEYS[2], 'remaining', -1) end
local lease = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZADD', KEYS[4], now + lease, ARGV[4])
redis.call('PEXPIRE', KEYS[4], math.ceil(lease * 1000))
return '0'
"""

# Frees the lease, refunds a 5xx (the server does not count it) and, when the
# answer had the headers, merges the server's count. Returns the seconds until
# the window resets if the quota is spent.
_FINISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[4] == '1' then
  local tat = tonumber(redis.call('GET', KEYS[3]) or '0')
  if tat > now then
    local back = math.max(now, tat - tonumber(ARGV[5]))
    redis.call('SET', KEYS[3], string.format('%.6f', back), 'KEEPTTL')
  end
  if redis.call('HEXISTS', KEYS[1], 'remaining') == 1 then
    redis.call('HINCRBY', KEYS[1], 'remaining', 1)
  end
end
if ARGV[2] ~= '' then
  local others = redis.call('ZCOUNT', KEYS[4], now, '+inf') - 1
  if others < 0 then others = 0 end
  local estimate = tonumber(ARGV[2]) - others
  local reset_at = tonumber(ARGV[3])
  local current = redis.call('HGET', KEYS[1], 'remaining')
  local current_reset = tonumber(redis.call('HGET', KEYS[1], 'reset_at') or '0')
  if (not current) or reset_at > current_reset + 0.5 then
    redis.call('HSET', KEYS[1], 'remaining', estimate, 'reset_at', ARGV[3])
  elseif reset_at > current_reset - 0.5 and estimate < tonumber(current) then
    redis.call('HSET', KEYS[1], 'remaining', estimate)
  end
  redis.call('PEXPIREAT', KEYS[1], math.ceil((reset_at + 5) * 1000))
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local remaining = redis.call('HGET', KEYS[1], 'remaining')
if remaining and tonumber(remaining) <= 0 then
  local reset_at = tonumber(redis.call('HGET', KEYS[1], 'reset_at'))
  if reset_at > now then return string.format('%.6f', reset_at - now) end
end
return '0'
"""

_SLOT_POLL = 0.02  # seconds between looks at a full parallel cap
_FALLBACK_RETRY = 30.0  # seconds on local buckets before trying Redis again


class QuotaBackendError(YandexMarketError):
    """The shared quota store (Redis) cannot be reached."""


class _Lease:
    __slots__ = ("business_id", "id", "local", "method")

    def __init__(self, business_id: int, method: str, local: Any = None) -> None:
        self.business_id = business_id
        self.method = method
        self.id = uuid.uuid4().hex
        self.local = local  # the lease of the local fallback, when it gave it


class RedisLimiter:
    """Rate limits shared through Redis by every client that uses the same keys.

    :param redis_url: e.g. ``"redis://localhost:6379/0"``; or pass `client`,
        a ``redis.asyncio.Redis`` you own.
    :param limits: per-method overrides of :data:`DEFAULT_LIMITS`, as for
        `ChatsClient` (``None`` for a method: no shared bucket).
    :param max_concurrency: requests in flight per business id, over all
        workers together.
    :param prefix: namespace of the keys (``{prefix}:{business}:{method}:...``).
    :param lease_seconds: how long a slot outlives a worker that died holding
        it; keep it above the client's request timeout.
    :param on_error: what a request does when Redis fails mid-run: ``"raise"``
        (default) fails it with `QuotaBackendError`; ``"local"`` falls back to
        in-process buckets at `local_fraction` of each quota and of the cap
        (pick at most 1/number of workers so that together they cannot
        overspend), retrying Redis every 30 s. Redis unreachable at `start`
        always raises.
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
        if (redis_url is None) == (client is None):
            raise ValueError("pass exactly one of redis_url or client")
        if on_error not in ("raise", "local"):
            raise ValueError(f"on_error must be 'raise' or 'local', got {on_error!r}")
        if not 0 < local_fraction <= 1:
            raise ValueError(f"local_fraction must be in (0, 1], got {local_fraction}")
        self._redis = client if client is not None else redis.Redis.from_url(str(redis_url))
        self._owns_redis = client is None
        self._where = _redacted(redis_url) if redis_url else "the given Redis client"
        self._config = {**DEFAULT_LIMITS, **(limits or {})}
        # (emission interval, burst tolerance) in seconds per method; 0 = no bucket
        self._gcra = {m: _gcra(self._config.get(m)) for m in METHODS}
        self._cap = max_concurrency or 0
        self._prefix = prefix
        self._lease_seconds = lease_seconds
        self._on_error = on_error
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._finish = self._redis.register_script(_FINISH)
        self._fallback = Limits(
            {m: _scaled(rate, local_fraction) for m, rate in self._config.items()},
            max(1, int(self._cap * local_fraction)) if self._cap else None,
        )
        self._fallback_until = 0.0
        self.waited = 0.0

    def __repr__(self) -> str:
        return f"RedisLimiter({self._where}, prefix={self._prefix!r})"

    async def __aenter__(self) -> RedisLimiter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Check that Redis answers; raise `QuotaBackendError` if it does not."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise QuotaBackendError(f"Redis at {self._where} is unreachable: {exc}") from exc

    async def close(self) -> None:
        """Close the connection pool, if this limiter created it."""
        if self._owns_redis:
            await self._redis.aclose()

    def _keys(self, business_id: int, method: str) -> list[str]:
        """The bucket, the server's count, the business's slots, the method's in-flight."""
        base = f"{self._prefix}:{business_id}"
        return [
            f"{base}:{method}:tat",
            f"{base}:{method}:server",
            f"{base}:slots",
            f"{base}:{method}:flight",
        ]

    async def acquire(self, business_id: int, method: str, deadline: float | None = None) -> _Lease:
        """Wait until the shared quota lets a request go out."""
        # TODO(redis helper): honour `deadline` (raise WaitTooLong up front).
        loop = asyncio.get_running_loop()
        started = loop.time()
        lease = _Lease(business_id, method)
        interval, tolerance = self._gcra[method]
        keys = self._keys(business_id, method)
        args: list[float | str] = [interval, tolerance, self._cap, lease.id, self._lease_seconds]
        while True:
            if time.monotonic() < self._fallback_until:
                lease.local = await self._fallback.acquire(business_id, method)
                break
            try:
                answer = await self._acquire(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                continue
            except asyncio.CancelledError:
                # The script may have taken a slot whose answer we will never
                # read: give it back now rather than after lease_seconds.
                await asyncio.shield(self._forget(lease))
                raise
            answer = answer.decode() if isinstance(answer, bytes) else str(answer)
            if answer == "0":
                break
            if answer == "slot":
                await asyncio.sleep(_SLOT_POLL * random.uniform(0.5, 1.5))
            else:
                await asyncio.sleep(float(answer))
        self.waited += loop.time() - started
        return lease

    async def finish(
        self, lease: _Lease, status: int | None, headers: Mapping[str, str] | None
    ) -> float:
        """Free the lease and share what the server said about the quota."""
        if lease.local is not None:
            return await self._fallback.finish(lease.local, status, headers)
        server = server_count(headers) if headers is not None else None
        # TODO(redis helper): ARGV[3] is now seconds until the reset (server's
        # clock); the script must place it on Redis's TIME, not compare clocks.
        remaining, until = (
            ("", "") if server is None else (str(server[0]), str(time.time() + server[1]))
        )
        tat, server_key, slots, flight = self._keys(lease.business_id, lease.method)
        refund = "1" if status is not None and status >= 500 else "0"
        interval = self._gcra[lease.method][0]
        try:
            answer = await self._finish(
                keys=[server_key, slots, tat, flight],
                args=[lease.id, remaining, until, refund, interval],
            )
        except (RedisError, OSError) as exc:
            # The lease expires by itself; only the lesson from the headers is lost.
            logger.warning("could not record an answer in Redis at %s: %s", self._where, exc)
            return 0.0
        return float(answer)

    async def _forget(self, lease: _Lease) -> None:
        _, _, slots, flight = self._keys(lease.business_id, lease.method)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(slots, lease.id)
                pipe.zrem(flight, lease.id)
                await pipe.execute()
        except (RedisError, OSError):
            pass  # the lease expires by itself

    def _redis_failed(self, exc: BaseException) -> None:
        if self._on_error == "raise":
            raise QuotaBackendError(
                f"Redis at {self._where} failed mid-run: {exc}; no request was sent"
            ) from exc
        logger.warning(
            "Redis at %s failed (%s); using local buckets at a fraction of each quota",
            self._where,
            exc,
        )
        self._fallback_until = time.monotonic() + _FALLBACK_RETRY


def _gcra(rate: RateLimit | None) -> tuple[float, float]:
    if rate is None:
        return 0.0, 0.0
    interval = rate.period_seconds / rate.amount
    return interval, interval * (rate.effective_burst - 1)


def _scaled(rate: RateLimit | None, fraction: float) -> RateLimit | None:
    if rate is None:
        return None
    return RateLimit(max(1, int(rate.amount * fraction)), rate.period_seconds)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
