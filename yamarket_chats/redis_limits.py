"""Quotas shared by every worker through Redis (``pip install yamarket-chats[redis]``).

`RedisLimiter` is the limits engine (`yamarket_chats.limits`) over a store in
Redis: the same rules as the in-process `Limits`, run by a Lua script shipped
with the package, so that every worker on one Redis (or one Redis Cluster)
spends one quota. Each (business id, method) has a bucket, the server's count
and the requests in flight; each business's parallel-request cap is a sorted
set of leases that expire, so a worker that dies never holds a slot for longer
than `lease_seconds`. A request costs one Redis round trip; see
`yamarket_chats.limits._redis_store` for how.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ._extras import missing_extra

try:
    import redis.asyncio as redis
    from redis.exceptions import NoPermissionError
except ModuleNotFoundError as error:
    raise missing_extra(error, "redis", __name__) from None

from . import _validate
from .errors import InvalidRequestError
from .limits import DEFAULT_LIMITS, RateLimit
from .limits._engine import Engine
from .limits._local import LocalStore
from .limits._redis_store import (
    BACKEND_ERRORS,
    MIN_POOL,
    QuotaBackendError,
    RedisStore,
    _Lease,
    pool_size,
)

__all__ = ["QuotaBackendError", "RedisLimiter"]

logger = logging.getLogger("yamarket_chats")

#: The oldest Redis the script runs on: it reads ``TIME`` and then writes,
#: which Redis refuses before 5.0 (scripts were replicated verbatim then).
_MIN_VERSION: Final = (5, 0)


class RedisLimiter(Engine[_Lease]):
    """Rate limits shared through Redis by every client that uses the same keys.

    :param redis_url: e.g. ``"redis://localhost:6379/0"``; or pass `client`,
        a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` you own.
    :param cluster: `redis_url` is a node of a Redis Cluster (the client finds
        the others from it). A `client` given is a cluster's when it is a
        ``RedisCluster``; `cluster` need not say so.
    :param limits: per-method overrides of :data:`DEFAULT_LIMITS`, as for
        `ChatsClient` (``None`` for a method: no shared bucket).
    :param max_concurrency: requests in flight per business id, over all
        workers together.
    :param prefix: namespace of the keys, ``<prefix>:{<business id>}:...``;
        the business id in braces is the keys' hash tag, so all the keys of
        a business are in one slot of a cluster (hence no braces in
        `prefix`). The slots key's name is also the pub/sub channel
        announcing free slots.
    :param lease_seconds: how long a slot outlives a worker that died holding
        it; keep it above the client's request timeout.
    :param on_error: what a request does when Redis fails mid-run: ``"raise"``
        (default) fails it with `QuotaBackendError`; ``"local"`` falls back to
        in-process limits, retrying Redis every 30 s. Redis unreachable at
        `start` always raises.
    :param local_fraction: the share of each quota one worker's fallback
        allows while Redis is down (with ``on_error="local"``): of the bucket,
        of `max_concurrency`, and of the server's own remaining count, which
        the fallback starts from what this worker last knew of it. Pick
        ``1/N`` for N workers, so that together they cannot overspend: each
        worker then runs at 1/N of the rate even when it is alone. The same
        rule holds without any Redis: N processes with plain `ChatsClient`
        each keep their own buckets, so give each ``limits`` of 1/N of every
        quota and ``max_concurrency`` of 4/N.

    Redis 5.0 or later, checked by `start`.

    Clocks: the workers' clocks are never compared with Redis's or with each
    other. Redis's ``TIME`` is the one clock of every bucket, lease and
    window; the server's reset is carried into Redis as a duration.

    Connections: at most 16 script calls are in flight at once, and never
    more than the client's pool allows less one (its ``max_connections``, to
    each node of a cluster); the others wait their turn in the limiter, in
    order and up to their deadline, however many businesses and requests
    are waiting. While a coroutine waits for a full parallel cap, the
    limiter holds that one more connection subscribed to the businesses'
    slot channels (so the Redis user needs ``PUBLISH`` and ``SUBSCRIBE`` as
    well as ``EVALSHA``, and ``INFO`` for the version check). So any pool of
    2 connections or more works (a smaller one is refused here, with
    `InvalidRequestError`), and a pool of 17 is never waited on; a `client`
    whose pool also serves your own commands needs room for those too. In a
    cluster the pub/sub connection goes to one node, which hears every
    node's messages. If pub/sub fails, such waits re-check every second
    instead. `close` sends the finishes still queued.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: redis.Redis | redis.RedisCluster | None = None,
        cluster: bool = False,
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
        if cluster and client is not None and not isinstance(client, redis.RedisCluster):
            raise InvalidRequestError("cluster=True needs a RedisCluster client (redis.asyncio)")
        if on_error not in ("raise", "local"):
            raise InvalidRequestError(f"on_error must be 'raise' or 'local', got {on_error!r}")
        if not 0 < _validate.seconds("local_fraction", local_fraction) <= 1:
            raise InvalidRequestError(f"local_fraction must be in (0, 1], got {local_fraction}")
        if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
            raise InvalidRequestError(
                f"prefix must be a string without braces (the business id in braces is "
                f"the keys' hash tag), got {prefix!r}"
            )
        _validate.limits(limits)
        _validate.max_concurrency(max_concurrency)
        _validate.seconds("lease_seconds", lease_seconds)
        self._redis = client if client is not None else _connect(str(redis_url), cluster)
        self._owns_redis = client is None
        _check_pool(self._redis, "client" if client is not None else "redis_url")
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
            fraction=local_fraction,
            where=self._where,
            on_free=self.wake,
        )
        super().__init__(self._redis_store)

    def __repr__(self) -> str:
        return f"RedisLimiter({self._where}, prefix={self._prefix!r})"

    def _lease(self, business_id: int, method: str, deadline: float | None) -> _Lease:
        return self._redis_store.lease(business_id, method, deadline)

    async def start(self) -> None:
        """Check that Redis answers and is recent enough; raise `QuotaBackendError` if not."""
        calls = self._redis_store.calls  # (a readiness probe mid-run takes its turn too)
        await calls.enter(None, first=True)  # /readyz must not wait behind every take
        try:
            await self._redis.ping()
            version = await _server_version(self._redis)
        except BACKEND_ERRORS as exc:
            raise QuotaBackendError(f"Redis at {self._where} is unreachable: {exc}") from exc
        finally:
            calls.leave()
        problem = _version_problem(version)
        if problem is not None:
            raise QuotaBackendError(f"Redis at {self._where}: {problem}")

    async def close(self) -> None:
        """Send the finishes still queued, then close what this limiter opened."""
        await self._redis_store.close()
        if self._owns_redis:
            await self._redis.aclose()


def _check_pool(client: redis.Redis | redis.RedisCluster, field: str) -> None:
    """Refuse a pool that cannot hold the pub/sub connection and one script call.

    Any pool from there up works: the limiter keeps its calls within it and
    waits its turn, so a small pool is slower under load, never an error.
    """
    size = pool_size(client)
    if size is not None and size < MIN_POOL:
        raise InvalidRequestError(
            f"{field}: a connection pool of max_connections={size} is too small; the "
            f"limiter needs at least {MIN_POOL} (one for pub/sub wake-ups, one for script calls)"
        )


def _version_problem(version: str | None) -> str | None:
    """Why a Redis reporting `version` cannot hold the quotas; None if it can.

    A version that cannot be read (``None``, or not ``major.minor...``)
    passes: a Redis-compatible server may report it otherwise.
    """
    found = re.match(r"(\d+)\.(\d+)", version or "")
    if found is None:
        return None
    if (int(found[1]), int(found[2])) >= _MIN_VERSION:
        return None
    needed = ".".join(map(str, _MIN_VERSION))
    return f"Redis {version} is too old: the quota script needs Redis {needed} or later"


async def _server_version(client: redis.Redis | redis.RedisCluster) -> str | None:
    """The oldest ``redis_version`` of the server (of every primary of a cluster).

    None when the Redis user may not run ``INFO``: the script's first call
    fails clearly enough on a Redis too old.
    """
    try:
        if isinstance(client, redis.RedisCluster):
            answer = await client.info("server", target_nodes=redis.RedisCluster.PRIMARIES)
        else:
            answer = await client.info("server")
    except NoPermissionError:
        logger.info("the Redis user may not run INFO: the Redis version is not checked")
        return None
    infos: list[Any] = [answer] if "redis_version" in answer else list(answer.values())
    versions = [str(info["redis_version"]) for info in infos if "redis_version" in info]
    return min(versions, key=_version_key, default=None)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _connect(url: str, cluster: bool) -> redis.Redis | redis.RedisCluster:
    if cluster:
        return redis.RedisCluster.from_url(url)
    return redis.Redis.from_url(url)


def _scaled(rate: RateLimit | None, fraction: float) -> RateLimit | None:
    if rate is None:
        return None
    return RateLimit(max(1, int(rate.amount * fraction)), rate.period_seconds)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
