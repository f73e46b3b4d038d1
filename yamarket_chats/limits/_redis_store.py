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

**One clock: Redis's ``TIME``.** Every moment stored in Redis is computed in
the script as ``TIME`` plus a duration. The server's ``-Until`` enters as the
seconds until the reset, measured on the API server's clock, never as a
wall-clock time of the worker, so workers whose clocks disagree with each
other, with Redis or with the API still share one quota correctly.

**Fallback.** With ``on_error="local"``, a failed call hands the takes to an
in-process store (at a fraction of each quota) for 30 s, then Redis again.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping
from importlib import resources
from typing import Any, Final, Literal

import redis.asyncio as redis
from redis.exceptions import RedisError

from ..errors import YandexMarketError
from ._engine import BUCKET, GO_AHEAD, SLOT, WINDOW, Answer, _ask
from ._local import FORGET_AFTER, WINDOW_TOLERANCE, LocalStore
from ._local import _Quota as _LocalQuota
from ._rate import RateLimit
from ._wakeups import Wakeups

__all__ = ["QuotaBackendError", "RedisStore"]

logger = logging.getLogger("yamarket_chats")

_FLUSH_DELAY = 0.005  # seconds a finish waits for a take to carry it
_FALLBACK_RETRY = 30.0  # seconds on the in-process store before trying Redis again
_KINDS: Final = {"window": WINDOW, "bucket": BUCKET, "slot": SLOT}


class QuotaBackendError(YandexMarketError):
    """The shared quota store (Redis) cannot be reached."""


class _Quota:
    """One (business id, method): its keys and its bucket's shape, made once."""

    __slots__ = ("business_id", "key", "max_rate", "method", "names", "rate")

    def __init__(self, business_id: int, method: str, prefix: str, limit: RateLimit | None):
        self.business_id = business_id
        self.method = method
        self.key = (business_id, method)
        base, each = f"{prefix}:{business_id}", f"{prefix}:{business_id}:{method}"
        # bucket, server's count, the business's slots (also a channel), in flight
        self.names = (f"{each}:bucket", f"{each}:server", f"{base}:slots", f"{each}:flight")
        self.max_rate, self.rate = 0.0, 0.0
        if limit is not None:
            # The model's AsyncLimiter, whose rate is max_rate / time_period.
            shape = limit.new_limiter()
            self.max_rate, self.rate = shape.max_rate, shape.max_rate / shape.time_period


class _Lease:
    __slots__ = ("id", "key", "local", "quota", "slots")

    def __init__(self, quota: _Quota, lease_id: str) -> None:
        self.quota = quota
        self.id = lease_id
        self.key: Hashable = quota.key
        self.slots: Hashable = quota.names[2]
        self.local: _LocalQuota | None = None  # the fallback's lease, when it gave it


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
        client: redis.Redis,
        limits: Mapping[str, RateLimit | None],
        cap: int,
        *,
        prefix: str,
        lease_seconds: float,
        on_error: Literal["raise", "local"],
        fallback: LocalStore,
        where: str,
        on_free: Callable[[str], None],
    ) -> None:
        self._limits = limits
        self._cap = cap
        self._urgent_below = max(cap, 1)  # a count this low is shared at once
        self._prefix = prefix
        self._lease_seconds = lease_seconds
        self._on_error = on_error
        self._fallback = fallback
        self._fallback_until = 0.0
        self._where = where
        self._script = client.register_script(_script_text())
        self._wakeups = Wakeups(client, on_free)
        self._quotas: dict[tuple[int, str], _Quota] = {}
        self._ids = itertools.count()
        self._worker = uuid.uuid4().hex[:16]
        self._pending: list[_Finish] = []
        self._pending_since = 0.0  # when the oldest queued finish was queued (monotonic)
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[float]] = set()
        #: False: every finish is its own round trip (benchmarks, tests).
        self.defer = True
        #: Tests only: the script's "now" instead of Redis's TIME, also the
        #: clock that ages queued finishes. Never set in production.
        self.clock: Callable[[], float] | None = None

    def lease(self, business_id: int, method: str) -> _Lease:
        """A new lease (its own id) on the (business, method)'s keys."""
        quota = self._quotas.get((business_id, method))
        if quota is None:
            limit = self._limits.get(method)
            quota = self._quotas[business_id, method] = _Quota(
                business_id, method, self._prefix, limit
            )
        return _Lease(quota, f"{self._worker}:{next(self._ids)}")

    async def watch(self, slots: Hashable) -> bool:
        """Subscribe to the slots' channel; True once Redis confirmed it."""
        return await self._wakeups.watch(str(slots))

    async def take(self, lease: _Lease) -> Answer:
        """This worker's queued finishes, then the take, in one script call."""
        if self._fallback_until and time.monotonic() < self._fallback_until:
            return await self._take_locally(lease)
        quota = lease.quota
        batch = self._take_pending()
        keys = list(quota.names)
        args: list[Any] = ["a", self._now(), self._cap, self._lease_seconds]
        args += (WINDOW_TOLERANCE, FORGET_AFTER, len(batch), lease.id, quota.max_rate, quota.rate)
        self._add_finishes(batch, keys, args)
        try:
            raw = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._requeue(batch)  # sent or not: sending a finish again changes nothing
            self._failed(exc)
            return await self._take_locally(lease)
        except asyncio.CancelledError:
            # The script may have taken a slot whose answer we will never
            # read: give it back now rather than after lease_seconds.
            self._requeue(batch)
            self._pending.append((lease, "", 0.0, 0.0, "0"))
            await asyncio.shield(self._flush())
            raise
        kind, _, seconds = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(" ")
        return GO_AHEAD if kind == "go" else (_KINDS[kind], float(seconds))

    async def _take_locally(self, lease: _Lease) -> Answer:
        quota = lease.quota
        local = self._fallback.lease(quota.business_id, quota.method)
        answer = await _ask(self._fallback, local)
        if answer is GO_AHEAD:
            lease.local = local
        return answer

    def finish(
        self, lease: _Lease, status: int | None, server: tuple[int, float] | None
    ) -> float | Awaitable[float]:
        """Queue the finish for the next take; send it at once when others must know.

        A 420, a 5xx or a count at or below the cap is sent at once and
        answered from Redis; otherwise 0 (the server counts quota left, or
        said nothing).
        """
        if lease.local is not None:
            return self._fallback.finish(lease.local, status, server)
        refund = "1" if status is not None and status >= 500 else "0"
        if not self._pending:
            self._pending_since = time.monotonic()
        if server is None:
            self._pending.append((lease, "", 0.0, 0.0, refund))
        else:
            self._pending.append((lease, str(server[0]), server[1], self._local_now(), refund))
        if (
            refund == "1"
            or status == 420
            or (server is not None and server[0] <= self._urgent_below)
            or not self.defer
        ):
            # ours is the last finish of the batch: the script answers for it
            return asyncio.shield(self._send(self._take_pending()))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_FLUSH_DELAY, self._flush_soon)
        return 0.0

    async def close(self) -> None:
        """Send the finishes still queued; stop listening for wake-ups."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            await self._send(self._take_pending())
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._wakeups.close()

    def _now(self) -> float | str:
        return "" if self.clock is None else self.clock()

    def _local_now(self) -> float:
        return time.monotonic() if self.clock is None else self.clock()

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

    async def _flush(self) -> float:
        return await self._send(self._take_pending())

    async def _send(self, batch: list[_Finish]) -> float:
        if not batch:
            return 0.0
        keys: list[str] = []
        args: list[Any] = ["f", self._now(), self._cap, self._lease_seconds]
        args += (WINDOW_TOLERANCE, FORGET_AFTER, len(batch))
        self._add_finishes(batch, keys, args)
        try:
            raw = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
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
