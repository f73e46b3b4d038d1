"""Quotas kept in Redis and shared by every worker: the store behind `RedisLimiter`.

The rules are the in-process model's (`_local`), in Lua (``quota.lua``,
shipped with the package): one script takes everything a request needs in one
atomic step, or nothing. This module feeds it.

**One round trip per request.** `RedisStore.finish` queues the release of the
lease, the 5xx refund and the server's count in the process; the next take of
the same worker applies them first, in the same script call. When no take
follows, they go on their own within a few milliseconds; a 420, a 5xx or a
nearly spent count goes at once, so one worker's 420 slows all of them
without delay.

**One slot per script call (Redis Cluster).** Every key of a business
carries its id as the hash tag (``<prefix>:{<business id>}:...``), so one
business's keys share a slot. A script call never mixes businesses in a
cluster: a take carries only the queued finishes of its own business, and
finishes no take carried go in one call per business. On a single Redis any
finishes ride on any take.

**Connections: bounded, whatever the load.** redis-py's pool refuses a
connection past its ``max_connections`` rather than waiting for one, so the
store keeps its script calls within the pool: at most `MAX_CALLS` in
flight, never more than the pool less the pub/sub connection (`Calls`).
The others wait in this process, in order, up to their acquire's deadline;
finishes go ahead of takes. With the engine's turns (one take in flight per
business and method, one waiter per business for a full cap) the calls in
flight never exceed the number of keys being asked about, nor the bound.

**One clock: Redis's ``TIME``.** Every moment stored in Redis is computed in
the script as ``TIME`` plus a duration. The server's ``-Until`` enters as the
seconds until the reset, measured on the API server's clock, never as a
wall-clock time of the worker, so workers whose clocks disagree with each
other, with Redis or with the API still share one quota correctly.

**What a worker knows of the server's count.** Each (business, method) keeps
the count as this worker last learned it: from Redis with every take, from
the answers it gets, less the requests it sends. It stands in for Redis when
Redis has lost its state (a take sends it as a hint, which the script uses
only when it holds no count of its own) or cannot be reached (below).

**Fallback.** With ``on_error="local"``, a failed call hands the takes to an
in-process store for 30 s, then Redis again. The fallback allows the worker
its fraction of each quota: of the bucket, of the parallel cap, and of the
server's count (seeded from what the worker knew, and of every count an answer
reports meanwhile), so that N workers at ``1/N`` each stay within what the
server has left.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from importlib import resources
from typing import Any, Final, Literal

import redis.asyncio as redis

from ..errors import YandexMarketError
from ._engine import BUCKET, GO_AHEAD, SLOT, WINDOW, Answer, _ask, await_by
from ._local import FORGET_AFTER, WINDOW_TOLERANCE, LocalStore, _forget_over, _observe
from ._local import _Quota as _LocalQuota
from ._protocol import WaitTooLong
from ._rate import RateLimit
from ._wakeups import BACKEND_ERRORS, Wakeups

__all__ = ["BACKEND_ERRORS", "MIN_POOL", "QuotaBackendError", "RedisStore", "pool_size"]

logger = logging.getLogger("yamarket_chats")

#: The fewest connections a pool must allow: one for pub/sub, one for script calls.
MIN_POOL: Final = 2
#: The most script calls in flight per limiter, whatever the pool allows: Redis
#: runs scripts one at a time, so more calls in flight only queue there.
MAX_CALLS: Final = 16
_FLUSH_DELAY = 0.005  # seconds a finish waits for a take to carry it
_FALLBACK_RETRY = 30.0  # seconds on the in-process store before trying Redis again
_KINDS: Final = {"window": WINDOW, "bucket": BUCKET, "slot": SLOT}


class QuotaBackendError(YandexMarketError):
    """The shared quota store (Redis) cannot be reached."""


class _Quota:
    """One (business id, method): its keys, its bucket's shape, what this worker knows."""

    __slots__ = (
        "business_id",
        "epoch",
        "group",
        "in_flight",
        "key",
        "max_rate",
        "method",
        "names",
        "rate",
        "remaining",
        "reset_at",
    )

    def __init__(
        self, business_id: int, method: str, prefix: str, limit: RateLimit | None, cluster: bool
    ) -> None:
        self.business_id = business_id
        self.method = method
        self.key = (business_id, method)
        # The business id is the hash tag: all of a business's keys in one slot.
        base = f"{prefix}:{{{business_id}}}"
        each = f"{base}:{method}"
        # bucket, server's count, the business's slots (also a channel), in flight
        self.names = (f"{each}:bucket", f"{each}:server", f"{base}:slots", f"{each}:flight")
        # finishes that may share a script call (a cluster's slot: the business)
        self.group: Hashable = business_id if cluster else None
        self.max_rate, self.rate = 0.0, 0.0
        if limit is not None:
            # The model's AsyncLimiter, whose rate is max_rate / time_period.
            shape = limit.new_limiter()
            self.max_rate, self.rate = shape.max_rate, shape.max_rate / shape.time_period
        # The server's count as this worker knows it (None: unknown), its reset
        # on this process's clock (`RedisStore._local_now`), this worker's
        # requests out: what the model keeps, and learns by the same rules.
        self.remaining: int | None = None
        self.reset_at = 0.0
        self.in_flight = 0
        self.epoch = 0  # the fallback epoch the fallback was last seeded in


class _Lease:
    __slots__ = ("deadline", "id", "key", "local", "quota", "slots")

    def __init__(self, quota: _Quota, lease_id: str, deadline: float | None) -> None:
        self.quota = quota
        self.id = lease_id
        self.deadline = deadline  # the acquire's (monotonic): bounds the wait for a connection
        self.key: Hashable = quota.key
        self.slots: Hashable = quota.names[2]
        self.local: _LocalQuota | None = None  # the fallback's lease, when it gave it


_BUSY = "every call slot of the Redis limiter stayed busy (its connections)"


class Calls:
    """At most `size` script calls in flight; the others wait here, in order.

    So the limiter never asks the pool for more connections than it has:
    a pool that runs out raises (redis-py's ``Too many connections``), it
    does not wait. A wait here ends at the caller's deadline (`WaitTooLong`).
    """

    __slots__ = ("_first", "_free", "_queue")

    def __init__(self, size: int) -> None:
        self._free = size
        self._first: deque[asyncio.Future[bool]] = deque()  # served before `_queue`
        self._queue: deque[asyncio.Future[bool]] = deque()

    async def enter(self, deadline: float | None, first: bool = False) -> None:
        """Wait for a call's turn (at once while fewer than `size` are in flight).

        `first`: ahead of the others, in their own order (finishes: they
        free the slots and share the spent windows that the takes queued
        behind them wait for; a readiness check, which must answer quickly).
        """
        if self._free:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        (self._first if first else self._queue).append(turn)
        timeout = None if deadline is None else deadline - loop.time()
        try:
            came = await await_by(turn, timeout, loop)
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.result():
                self.leave()  # the turn came with the cancellation: hand it on
            else:
                turn.cancel()
            raise
        if not came:
            raise WaitTooLong(None, _BUSY)

    def leave(self) -> None:
        """A call is over: the next one queued goes (its connection is back in the pool)."""
        for queue in (self._first, self._queue):
            while queue:
                turn = queue.popleft()
                if not turn.done():  # (not cancelled, nor past its deadline)
                    turn.set_result(True)
                    return
        self._free += 1


def pool_size(client: redis.Redis | redis.RedisCluster) -> int | None:
    """The most connections `client` opens (to each node of a cluster); None if unknown."""
    if isinstance(client, redis.RedisCluster):
        size = getattr(client, "connection_kwargs", {}).get("max_connections")
    else:
        size = getattr(client.connection_pool, "max_connections", None)
    return size if isinstance(size, int) else None


def calls_bound(pool: int | None) -> int:
    """Script calls in flight for a pool of `pool` connections: one is left for pub/sub."""
    if pool is None:
        return MAX_CALLS
    return max(1, min(pool - 1, MAX_CALLS))


# A finish waiting to be sent: lease, server's remaining ('' unknown), seconds
# until its reset, when those seconds were measured, refund flag.
_Finish = tuple[_Lease, str, float, float, str]


@functools.cache
def _script_text() -> str:
    return resources.files(__package__).joinpath("quota.lua").read_text(encoding="utf-8")


class RedisStore:
    """The store of `RedisLimiter`: quota.lua, finishes carried by takes, fallback."""

    may_miss_wakeups = True  # pub/sub can fail or lag: slot waits re-check

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        limits: Mapping[str, RateLimit | None],
        cap: int,
        *,
        prefix: str,
        lease_seconds: float,
        on_error: Literal["raise", "local"],
        fallback: LocalStore,
        fraction: float,
        where: str,
        on_free: Callable[[str], None],
    ) -> None:
        self._limits = limits
        self._cap = cap
        self._urgent_below = max(cap, 1)  # a count this low is shared at once
        self._prefix = prefix
        self._cluster = isinstance(client, redis.RedisCluster)
        self._lease_seconds = lease_seconds
        self._on_error = on_error
        self._fallback = fallback
        self._fraction = fraction
        self._fallback_until = 0.0
        self._epoch = 0  # counts the switches to the fallback
        self._where = where
        self._script = client.register_script(_script_text())
        self.calls = Calls(calls_bound(pool_size(client)))
        self._wakeups = Wakeups(client, on_free)
        self._quotas: dict[tuple[int, str], _Quota] = {}
        self._ids = itertools.count()
        self._worker = uuid.uuid4().hex[:16]
        self._pending: dict[Hashable, list[_Finish]] = {}  # by `_Quota.group`
        self._pending_since = 0.0  # when the oldest queued finish was queued (monotonic)
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        #: False: every finish is its own round trip (benchmarks, tests).
        self.defer = True
        #: Tests only: the script's "now" instead of Redis's TIME, also the
        #: clock that ages queued finishes. Never set in production.
        self.clock: Callable[[], float] | None = None

    def lease(self, business_id: int, method: str, deadline: float | None = None) -> _Lease:
        """A new lease (its own id) on the (business, method)'s keys."""
        quota = self._quotas.get((business_id, method))
        if quota is None:
            limit = self._limits.get(method)
            quota = self._quotas[business_id, method] = _Quota(
                business_id, method, self._prefix, limit, self._cluster
            )
        return _Lease(quota, f"{self._worker}:{next(self._ids)}", deadline)

    async def watch(self, slots: Hashable) -> bool:
        """Subscribe to the slots' channel; True once Redis confirmed it."""
        return await self._wakeups.watch(str(slots))

    async def take(self, lease: _Lease) -> Answer:
        """This worker's queued finishes (of the business, in a cluster), then the take."""
        if self._falling_back():
            return await self._take_locally(lease)
        # Nothing is sent yet: a deadline or a cancellation here leaves nothing behind.
        await self.calls.enter(lease.deadline)
        quota = lease.quota
        batch = self._pending.pop(quota.group, [])  # (those queued meanwhile ride too)
        keys = list(quota.names)
        args: list[Any] = ["a", self._now(), self._cap, self._lease_seconds]
        args += (WINDOW_TOLERANCE, FORGET_AFTER, len(batch), lease.id, quota.max_rate, quota.rate)
        args += self._hint(quota)
        self._add_finishes(batch, keys, args)
        try:
            try:
                raw = await self._script(keys=keys, args=args)
            finally:
                self.calls.leave()
        except BACKEND_ERRORS as exc:
            self._requeue(quota.group, batch)  # sent or not: sending a finish again changes nothing
            self._failed(exc)
            return await self._take_locally(lease)
        except asyncio.CancelledError:
            # The script may have taken a slot whose answer we will never
            # read: give it back now rather than after lease_seconds.
            self._requeue(quota.group, batch)
            self._pending.setdefault(quota.group, []).append((lease, "", 0.0, 0.0, "0"))
            await asyncio.shield(self._send(self._pending.pop(quota.group)))
            raise
        return self._answer(quota, raw)

    def _hint(self, quota: _Quota) -> tuple[str, float]:
        """The count this worker knows, for the script to restore if Redis lost its own.

        Only of a window that runs a while yet (past `WINDOW_TOLERANCE`): a
        window Redis forgot for being over is never brought back.
        """
        if quota.remaining is not None:
            left = quota.reset_at - self._local_now()
            if left > WINDOW_TOLERANCE:
                return str(quota.remaining), left
        return "", 0.0

    def _answer(self, quota: _Quota, raw: bytes | str) -> Answer:
        """The script's answer; what it says of the server's count is kept."""
        kind, *rest = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(" ")
        if kind == "go":
            quota.in_flight += 1
            if rest:  # Redis's count, this take included, is the freshest there is
                quota.remaining, quota.reset_at = int(rest[0]), self._local_now() + float(rest[1])
            else:
                quota.remaining = None
            return GO_AHEAD
        seconds = float(rest[0])
        if kind == "window":
            quota.remaining, quota.reset_at = 0, self._local_now() + seconds
        return _KINDS[kind], seconds

    async def _take_locally(self, lease: _Lease) -> Answer:
        quota = lease.quota
        if quota.epoch != self._epoch:
            quota.epoch = self._epoch
            self._seed(quota)
        local = self._fallback.lease(quota.business_id, quota.method)
        answer = await _ask(self._fallback, local)
        if answer is GO_AHEAD:
            lease.local = local
            quota.in_flight += 1
            if quota.remaining is not None:
                quota.remaining -= 1
        return answer

    def _seed(self, quota: _Quota) -> None:
        """Give the fallback this worker's share of the count it knows, until its reset."""
        if quota.remaining is not None:
            left = quota.reset_at - self._local_now()
            if left > 0:
                self._fallback.observe(
                    quota.business_id, quota.method, self._share(quota.remaining), left
                )

    def _share(self, remaining: int) -> int:
        # (the epsilon: 1/3 of 3 is 0.999... in floats, and must be 1)
        return math.floor(remaining * self._fraction + 1e-9)

    def finish(
        self, lease: _Lease, status: int | None, server: tuple[int, float] | None
    ) -> float | Awaitable[float]:
        """Queue the finish for the next take; send it at once when others must know.

        A 420, a 5xx or a count at or below the cap is sent at once and
        answered from Redis; otherwise 0 (the server counts quota left, or
        said nothing).
        """
        refund = "1" if status is not None and status >= 500 else "0"
        self._remember(lease.quota, refund == "1", server)
        if lease.local is not None:
            shared = None if server is None else (self._share(server[0]), server[1])
            return self._fallback.finish(lease.local, status, shared)
        if server is not None and lease.quota.epoch == self._epoch and self._falling_back():
            # in flight when Redis failed: the fallback, seeded already, learns it too
            quota = lease.quota
            self._fallback.observe(
                quota.business_id, quota.method, self._share(server[0]), server[1]
            )
        return self._queue(lease, status, server, refund)

    def _remember(self, quota: _Quota, refund: bool, server: tuple[int, float] | None) -> None:
        """What an answer teaches this worker of the server's count: the model's `finish`."""
        quota.in_flight -= 1
        if quota.remaining is None and server is None:
            return
        now = self._local_now()
        _forget_over(quota, now)
        if refund and quota.remaining is not None:
            quota.remaining += 1
        if server is not None:
            _observe(quota, server[0], server[1], now)

    def _falling_back(self) -> bool:
        return bool(self._fallback_until) and time.monotonic() < self._fallback_until

    def _queue(
        self, lease: _Lease, status: int | None, server: tuple[int, float] | None, refund: str
    ) -> float | Awaitable[float]:
        group = lease.quota.group
        if not self._pending:
            self._pending_since = time.monotonic()
        batch = self._pending.get(group)
        if batch is None:
            batch = self._pending[group] = []
        if server is None:
            batch.append((lease, "", 0.0, 0.0, refund))
        else:
            batch.append((lease, str(server[0]), server[1], self._local_now(), refund))
        if (
            refund == "1"
            or status == 420
            or (server is not None and server[0] <= self._urgent_below)
            or not self.defer
        ):
            # ours is the last finish of the batch: the script answers for it
            return asyncio.shield(self._send(self._pending.pop(group)))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_FLUSH_DELAY, self._flush_soon)
        return 0.0

    async def close(self) -> None:
        """Send the finishes still queued; stop listening for wake-ups."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._wakeups.close()

    def _now(self) -> float | str:
        return "" if self.clock is None else self.clock()

    def _local_now(self) -> float:
        return time.monotonic() if self.clock is None else self.clock()

    def _requeue(self, group: Hashable, batch: list[_Finish]) -> None:
        if batch:
            self._pending[group] = batch + self._pending.get(group, [])
            self._pending_since = 0.0  # overdue
            if self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(_FLUSH_DELAY, self._flush_soon)

    def _flush_soon(self) -> None:
        """Send the finishes no take carried within the delay."""
        self._timer = None
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        early = self._pending_since + _FLUSH_DELAY - time.monotonic()
        if early > 0.0005:  # queued after a take carried the older ones
            self._timer = loop.call_later(early, self._flush_soon)
            return
        task = loop.create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        """Send every queued finish: one script call per group, together."""
        batches, self._pending = self._pending, {}
        if len(batches) == 1:
            for batch in batches.values():
                await self._send(batch)
        elif batches:
            await asyncio.gather(*(self._send(batch) for batch in batches.values()))

    async def _send(self, batch: list[_Finish]) -> float:
        if not batch:
            return 0.0
        await self.calls.enter(None, first=True)
        keys: list[str] = []
        args: list[Any] = ["f", self._now(), self._cap, self._lease_seconds]
        args += (WINDOW_TOLERANCE, FORGET_AFTER, len(batch))
        self._add_finishes(batch, keys, args)
        try:
            try:
                raw = await self._script(keys=keys, args=args)
            finally:
                self.calls.leave()
        except BACKEND_ERRORS as exc:
            # The leases expire by themselves; only the lessons from the headers are lost.
            logger.warning("could not record an answer in Redis at %s: %s", self._where, exc)
            return 0.0
        return float(raw)

    def _add_finishes(self, batch: list[_Finish], keys: list[str], args: list[Any]) -> None:
        now = self._local_now()
        for lease, remaining, reset_in, measured, refund in batch:
            keys += lease.quota.names
            # the seconds until the reset, as of now: the clock that ticked
            # meanwhile is this process's monotonic one, never a wall clock
            left = max(0.0, reset_in - (now - measured)) if remaining else 0.0
            args += (lease.id, refund, remaining, left)

    def _failed(self, exc: BaseException) -> None:
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
        self._epoch += 1
