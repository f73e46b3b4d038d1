"""Quotas shared by every worker through Redis (``pip install yamarket-chats[redis]``).

Each (business id, method) quota is a GCRA token bucket in Redis, and each
business's parallel-request cap is a sorted set of leases that expire, so a
worker that dies never holds a slot for longer than `lease_seconds`. One Lua
script takes everything a request needs in one atomic step (the server's
count, the bucket, a slot) or nothing, so waiting for quota never holds a slot.

**One round trip per request.** `RedisLimiter.finish` queues the release of
the lease, the 5xx refund and the server's ``X-RateLimit-Resource-*`` count in
the process; the next `RedisLimiter.acquire` of the same worker applies them
first, in the same script. When no acquire follows, they go on their own
within a few milliseconds; a 420, a 5xx or a nearly spent quota goes at once,
so one worker's 420 slows all of them without delay.

**One clock: Redis's ``TIME``.** Every moment stored in Redis is computed
inside the scripts as ``TIME`` plus a duration. The server's ``-Until``
enters as the seconds until the reset, measured on the API server's own clock
(:func:`~yamarket_chats.limits.server_count`), never as a wall-clock time of
the worker, so workers whose clocks disagree with each other, with Redis or
with the API still share one quota correctly.

**No polling.** A request waiting for the bucket or the server's window sleeps
until the moment Redis computed. One waiting for a parallel slot sleeps until
a slot is released (by this worker, or by another one: the script announces it
on Redis pub/sub) or the earliest lease expires. In each process, one
coroutine per business (and per business and method) asks Redis at a time;
the others queue behind it without a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.exceptions import RedisError

from . import _validate
from .errors import InvalidRequestError, YandexMarketError
from .limits import DEFAULT_LIMITS, METHODS, Limits, RateLimit, WaitTooLong, server_count

__all__ = ["QuotaBackendError", "RedisLimiter"]

logger = logging.getLogger("yamarket_chats")

# One script for both jobs. KEYS come in fours (tat, server, slots, flight):
# first the acquire's when ARGV[1] is 'a', then one four per queued finish.
# ARGV: mode, cap, lease seconds, number of finishes; for 'a' the bucket's
# interval and tolerance and the new lease id; then per finish: lease id, the
# server's remaining ('' when the answer had no count), seconds until its
# reset, '1' to refund a 5xx, the bucket's interval.
# 'a' returns '0' (go), 'slot <s>' (cap full, earliest lease ends in s), or
# the seconds to wait for the server's window or the bucket. 'f' returns the
# seconds until the last finish's quota resets if it is spent, else '0'.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local k, a = 0, 4
if ARGV[1] == 'a' then k, a = 4, 7 end
local freed = {}
local server
for _ = 1, tonumber(ARGV[4]) do
  server = KEYS[k + 2]
  local tat, slots, flight = KEYS[k + 1], KEYS[k + 3], KEYS[k + 4]
  local id = ARGV[a + 1]
  -- a finish sent twice (its first call's fate unknown) changes nothing more
  local live = redis.call('ZREM', flight, id) == 1
  if live and ARGV[a + 4] == '1' then
    local v = tonumber(redis.call('GET', tat) or '0')
    if v > now then
      local back = math.max(now, v - tonumber(ARGV[a + 5]))
      redis.call('SET', tat, string.format('%.6f', back), 'KEEPTTL')
    end
    if redis.call('HEXISTS', server, 'remaining') == 1 then
      redis.call('HINCRBY', server, 'remaining', 1)
    end
  end
  if ARGV[a + 2] ~= '' then
    -- requests still in flight may be missing from the server's count
    local estimate = tonumber(ARGV[a + 2]) - redis.call('ZCOUNT', flight, now, '+inf')
    local reset_at = now + tonumber(ARGV[a + 3])
    local current = redis.call('HGET', server, 'remaining')
    local current_reset = tonumber(redis.call('HGET', server, 'reset_at') or '0')
    if (not current) or reset_at > current_reset + 0.5 then
      redis.call('HSET', server, 'remaining', estimate,
                 'reset_at', string.format('%.6f', reset_at))
    elseif reset_at > current_reset - 0.5 and estimate < tonumber(current) then
      redis.call('HSET', server, 'remaining', estimate)
    end
    redis.call('PEXPIREAT', server, math.ceil((reset_at + 5) * 1000))
  end
  if cap > 0 and redis.call('ZREM', slots, id) == 1
     and redis.call('ZCARD', slots) == cap - 1 then
    freed[slots] = true
  end
  k, a = k + 4, a + 5
end

local function take()
  local remaining = redis.call('HGET', KEYS[2], 'remaining')
  if remaining and tonumber(remaining) <= 0 then
    local reset_at = tonumber(redis.call('HGET', KEYS[2], 'reset_at'))
    if now < reset_at then return string.format('%.6f', reset_at - now) end
    redis.call('DEL', KEYS[2])
    remaining = nil
  end
  local interval = tonumber(ARGV[5])
  local new_tat = 0
  if interval > 0 then
    local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
    if tat < now then tat = now end
    local allow_at = tat - tonumber(ARGV[6])
    if allow_at > now then return string.format('%.6f', allow_at - now) end
    new_tat = tat + interval
  end
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    if redis.call('ZCARD', KEYS[3]) >= cap then
      local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
      return string.format('slot %.6f', tonumber(first[2]) - now)
    end
    redis.call('ZADD', KEYS[3], now + lease, ARGV[7])
    redis.call('PEXPIRE', KEYS[3], math.ceil(lease * 1000))
  end
  if interval > 0 then
    redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
               math.ceil((new_tat - now) * 1000) + 1000)
  end
  if remaining then redis.call('HINCRBY', KEYS[2], 'remaining', -1) end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  redis.call('ZADD', KEYS[4], now + lease, ARGV[7])
  redis.call('PEXPIRE', KEYS[4], math.ceil(lease * 1000))
  return '0'
end

local answer = '0'
if ARGV[1] == 'a' then
  answer = take()
elseif server then
  local remaining = redis.call('HGET', server, 'remaining')
  if remaining and tonumber(remaining) <= 0 then
    local reset_at = tonumber(redis.call('HGET', server, 'reset_at'))
    if reset_at > now then answer = string.format('%.6f', reset_at - now) end
  end
end
-- tell waiting workers (pub/sub on the slots key's name) that a slot is free
for slots in pairs(freed) do
  if redis.call('ZCARD', slots) < cap then redis.call('PUBLISH', slots, '1') end
end
return answer
"""

_FLUSH_DELAY = 0.005  # seconds a finish waits for an acquire to carry it
_BACKSTOP = (0.05, 1.0)  # first and longest re-check of a full cap without a wake-up
_SUBSCRIBE_TIMEOUT = 1.0  # seconds to wait for Redis to confirm a subscription
_PUBSUB_RETRY = 5.0  # seconds before subscribing again after pub/sub failed
_FALLBACK_RETRY = 30.0  # seconds on local buckets before trying Redis again

_GO, _WAIT, _SLOT = "go", "wait", "slot"
_Answer = tuple[str, float]
# A finish waiting to be sent: lease, server's remaining ('' unknown), seconds
# until its reset, when those seconds were measured (monotonic), refund flag.
_Finish = tuple["_Lease", str, float, float, str]


class QuotaBackendError(YandexMarketError):
    """The shared quota store (Redis) cannot be reached."""


class _Lease:
    __slots__ = ("business_id", "id", "keys", "local", "method")

    def __init__(self, business_id: int, method: str, lease_id: str, keys: tuple[str, ...]) -> None:
        self.business_id = business_id
        self.method = method
        self.id = lease_id
        self.keys = keys  # tat, server, slots, flight
        self.local: Any = None  # the lease of the local fallback, when it gave it


class _Gate:
    """Where the coroutines of this process queue for one Redis wait.

    Only the holder of `lock` asks Redis; `wake` tells it to ask again, and
    `until` is when its known wait ends (monotonic, 0 if not known).
    """

    __slots__ = ("lock", "until", "users", "wake")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.users = 0
        self.until = 0.0


class _Wakeups:
    """One pub/sub connection announcing slots that other workers free."""

    def __init__(self, client: redis.Redis, on_free: Callable[[str], None]) -> None:
        self._redis = client
        self._on_free = on_free
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Future[bool]] = {}
        self._down_until = 0.0

    async def watch(self, channel: str) -> bool:
        """Subscribe to `channel`; True once Redis confirmed it."""
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            if time.monotonic() < self._down_until:
                return False
            loop = asyncio.get_running_loop()
            confirmed = self._confirmed[channel] = loop.create_future()
            try:
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub()
                await self._pubsub.subscribe(channel)
            except (RedisError, OSError) as exc:
                self._failed(exc)
                return False
            if self._reader is None:
                self._reader = loop.create_task(self._read(self._pubsub))
        if not confirmed.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(confirmed), _SUBSCRIBE_TIMEOUT)
        return confirmed.done() and confirmed.result()

    async def _read(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                if message["type"] == "message":
                    self._on_free(channel)
                elif message["type"] == "subscribe":
                    confirmed = self._confirmed.get(channel)
                    if confirmed is not None and not confirmed.done():
                        confirmed.set_result(True)
        except (RedisError, OSError) as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        logger.warning(
            "Redis pub/sub failed (%s); waits for a parallel slot re-check every second", exc
        )
        self._down_until = time.monotonic() + _PUBSUB_RETRY
        for confirmed in self._confirmed.values():
            if not confirmed.done():
                confirmed.set_result(False)
        self._confirmed.clear()
        self._reader = None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            asyncio.get_running_loop().create_task(_quietly(pubsub.aclose()))

    async def close(self) -> None:
        """Stop listening and give the connection back."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await reader
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _quietly(pubsub.aclose())
        self._confirmed.clear()


async def _quietly(closing: Any) -> None:
    with contextlib.suppress(RedisError, OSError):
        await closing


class RedisLimiter:
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
        self._config = {**DEFAULT_LIMITS, **(limits or {})}
        # (emission interval, burst tolerance) in seconds per method; 0 = no bucket
        self._gcra = {m: _gcra(self._config.get(m)) for m in METHODS}
        self._cap = max_concurrency or 0
        self._urgent_below = max(self._cap, 1)  # a count this low is shared at once
        self._prefix = prefix
        self._key_cache: dict[tuple[int, str], tuple[str, ...]] = {}
        self._lease_seconds = lease_seconds
        self._on_error = on_error
        self._script = self._redis.register_script(_SCRIPT)
        self._fallback = Limits(
            {m: _scaled(rate, local_fraction) for m, rate in self._config.items()},
            max(1, int(self._cap * local_fraction)) if self._cap else None,
        )
        self._fallback_until = 0.0
        self._ids = itertools.count()
        self._worker = uuid.uuid4().hex[:16]
        self._pending: list[_Finish] = []
        self._pending_since = 0.0  # when the oldest queued finish was queued (monotonic)
        self._defer = True  # False: every finish is its own round trip
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[float]] = set()
        self._method_gates: dict[tuple[int, str], _Gate] = {}
        self._slot_gates: dict[str, _Gate] = {}
        self._wakeups = _Wakeups(self._redis, self._slot_freed)
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
        """Send the finishes still queued, then close what this limiter opened."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            await self._send(self._take_pending())
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._wakeups.close()
        if self._owns_redis:
            await self._redis.aclose()

    def _keys(self, business_id: int, method: str) -> tuple[str, ...]:
        """The bucket, the server's count, the business's slots, the method's in-flight.

        Made once per (business, method): every request of it needs them.
        """
        keys = self._key_cache.get((business_id, method))
        if keys is None:
            base = f"{self._prefix}:{business_id}"
            keys = self._key_cache[business_id, method] = (
                f"{base}:{method}:tat",
                f"{base}:{method}:server",
                f"{base}:slots",
                f"{base}:{method}:flight",
            )
        return keys

    # -- acquire -------------------------------------------------------------

    async def acquire(self, business_id: int, method: str, deadline: float | None = None) -> _Lease:
        """Wait until the shared quota lets a request go out.

        `deadline` (``time.monotonic()``): raise `WaitTooLong` at once when
        the bucket or the server's window opens only after it; a wait for a
        parallel slot gives up at the deadline with ``WaitTooLong(None)``.
        """
        started = time.monotonic()
        keys = self._keys(business_id, method)
        lease = _Lease(business_id, method, f"{self._worker}:{next(self._ids)}", keys)
        try:
            await self._queue(lease, deadline)
        finally:
            self.waited += time.monotonic() - started
        return lease

    async def _try(self, lease: _Lease, deadline: float | None) -> _Answer:
        """One attempt: this worker's queued finishes first, then the take."""
        if time.monotonic() < self._fallback_until:
            lease.local = await self._fallback.acquire(lease.business_id, lease.method, deadline)
            return _GO, 0.0
        batch = self._take_pending()
        interval, tolerance = self._gcra[lease.method]
        keys = list(lease.keys)
        args: list[Any] = ["a", self._cap, self._lease_seconds, len(batch)]
        args += [interval, tolerance, lease.id]
        self._add_finishes(batch, keys, args)
        try:
            raw = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._requeue(batch)  # sent or not: sending a finish again changes nothing
            self._redis_failed(exc)
            return await self._try(lease, deadline)
        except asyncio.CancelledError:
            # The script may have taken a slot whose answer we will never
            # read: give it back now rather than after lease_seconds.
            self._requeue(batch)
            self._pending.append((lease, "", 0.0, 0.0, "0"))
            await asyncio.shield(self._flush())
            raise
        answer = raw.decode() if isinstance(raw, bytes) else str(raw)
        if answer == "0":
            return _GO, 0.0
        if answer.startswith("slot"):
            return _SLOT, max(0.001, float(answer[5:]))
        return _WAIT, float(answer)

    async def _queue(self, lease: _Lease, deadline: float | None) -> None:
        """Take the quota, behind the other coroutines of this process that want it.

        One attempt per (business, method) is in flight at a time, so a crowd
        of coroutines neither floods Redis nor drains the connection pool.
        """
        key = (lease.business_id, lease.method)
        gate = self._gate(self._method_gates, key)
        answer: _Answer | None = None
        try:
            await _enter(gate, deadline)
            try:
                while True:
                    if answer is None:
                        if lease.keys[2] in self._slot_gates:
                            answer = _SLOT, 0.0  # others wait for a slot: join them
                        else:
                            answer = await self._try(lease, deadline)
                    kind, seconds = answer
                    answer = None
                    if kind is _GO:
                        return
                    if kind is _WAIT:
                        if deadline is not None and time.monotonic() + seconds > deadline:
                            raise WaitTooLong(seconds)
                        gate.until = time.monotonic() + seconds
                        try:
                            await asyncio.sleep(seconds)
                        finally:
                            gate.until = 0.0
                    else:
                        answer = await self._wait_for_slot(lease, deadline)
            finally:
                gate.lock.release()
        finally:
            self._leave(self._method_gates, key, gate)

    async def _wait_for_slot(self, lease: _Lease, deadline: float | None) -> _Answer:
        """Wait until the business's cap has room; the answer that ended the wait."""
        channel = lease.keys[2]
        gate = self._gate(self._slot_gates, channel)
        try:
            await _enter(gate, deadline)
            try:
                watching = False
                backstop = _BACKSTOP[0]
                while True:
                    gate.wake.clear()
                    if not watching:
                        # Before asking: a slot freed after the answer wakes us.
                        watching = await self._wakeups.watch(channel)
                    answer = await self._try(lease, deadline)
                    if answer[0] is not _SLOT:
                        return answer
                    timeout = min(answer[1], backstop)
                    backstop = min(2 * backstop, _BACKSTOP[1])
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise WaitTooLong(None)
                        timeout = min(timeout, left)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(gate.wake.wait(), timeout)
            finally:
                gate.lock.release()
        finally:
            self._leave(self._slot_gates, channel, gate)

    @staticmethod
    def _gate(gates: dict[Any, _Gate], key: Any) -> _Gate:
        gate = gates.get(key)
        if gate is None:
            gate = gates[key] = _Gate()
        gate.users += 1
        return gate

    @staticmethod
    def _leave(gates: dict[Any, _Gate], key: Any, gate: _Gate) -> None:
        gate.users -= 1
        if gate.users == 0 and gates.get(key) is gate:
            del gates[key]

    def _slot_freed(self, channel: str) -> None:
        gate = self._slot_gates.get(channel)
        if gate is not None:
            gate.wake.set()

    # -- finish --------------------------------------------------------------

    async def finish(
        self, lease: _Lease, status: int | None, headers: Mapping[str, str] | None
    ) -> float:
        """Free the lease and share what the server said about the quota.

        Returns the seconds until the server's window resets when the quota
        is spent (0 otherwise). The release is usually carried by this
        worker's next `acquire`; a 420, a 5xx or a count at or below
        `max_concurrency` is sent at once and answered from Redis.
        """
        if lease.local is not None:
            return await self._fallback.finish(lease.local, status, headers)
        server = server_count(headers) if headers is not None else None
        refund = status is not None and status >= 500
        if not self._pending:
            self._pending_since = time.monotonic()
        if server is None:
            self._pending.append((lease, "", 0.0, 0.0, "1" if refund else "0"))
        else:
            remaining, reset_in = server
            entry = (lease, str(remaining), reset_in, time.monotonic(), "1" if refund else "0")
            self._pending.append(entry)
        gate = self._slot_gates.get(lease.keys[2])
        if gate is not None:
            gate.wake.set()  # its next attempt carries this release
        if (
            refund
            or status == 420
            or (server is not None and server[0] <= self._urgent_below)
            or not self._defer
        ):
            # ours is the last finish of the batch: the script answers for it
            return await asyncio.shield(self._send(self._take_pending()))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_FLUSH_DELAY, self._flush_soon)
        return 0.0  # the server counts quota left (or said nothing)

    def _take_pending(self) -> list[_Finish]:
        batch, self._pending = self._pending, []
        return batch

    def _requeue(self, batch: list[_Finish]) -> None:
        if batch:
            self._pending[:0] = batch
            self._pending_since = 0.0  # overdue
            if self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(_FLUSH_DELAY, self._flush_soon)

    def _flush_soon(self) -> None:
        """Send the finishes no acquire carried within the delay."""
        self._timer = None
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        early = self._pending_since + _FLUSH_DELAY - time.monotonic()
        if early > 0.0005:  # queued after an acquire took the older ones
            self._timer = loop.call_later(early, self._flush_soon)
            return
        task = loop.create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> float:
        return await self._send(self._take_pending())

    async def _send(self, batch: list[_Finish]) -> float:
        if not batch:
            return 0.0
        keys: list[str] = []
        args: list[Any] = ["f", self._cap, self._lease_seconds, len(batch)]
        self._add_finishes(batch, keys, args)
        try:
            raw = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            # The leases expire by themselves; only the lessons from the headers are lost.
            logger.warning("could not record an answer in Redis at %s: %s", self._where, exc)
            return 0.0
        return float(raw)

    def _add_finishes(self, batch: list[_Finish], keys: list[str], args: list[Any]) -> None:
        now = time.monotonic()
        for lease, remaining, reset_in, measured, refund in batch:
            keys += lease.keys
            # the seconds until the reset, as of now: the clock that ticked
            # meanwhile is this process's monotonic one, never a wall clock
            left = f"{max(0.0, reset_in - (now - measured)):.6f}" if remaining else ""
            args += (lease.id, remaining, left, refund, self._gcra[lease.method][0])

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


async def _enter(gate: _Gate, deadline: float | None) -> None:
    """Take `gate`'s lock, or raise `WaitTooLong` if our turn comes too late."""
    if deadline is None or not gate.lock.locked():
        await gate.lock.acquire()
        return
    now = time.monotonic()
    if gate.until > deadline:  # the holder alone sleeps past our deadline
        raise WaitTooLong(gate.until - now)
    try:
        await asyncio.wait_for(gate.lock.acquire(), max(0.0, deadline - now))
    except asyncio.TimeoutError:
        raise WaitTooLong(max(0.0, gate.until - time.monotonic()) or None) from None


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
