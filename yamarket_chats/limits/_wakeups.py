"""Wake-ups for slots that other workers free, over Redis pub/sub.

A coroutine waiting for a full parallel cap subscribes to the business's slots
channel (the slots key's name) before it asks Redis; the script PUBLISHes when
a finish frees a slot of a full cap, and the engine wakes the waiter. One
connection per limiter carries every subscription.

A Redis Cluster works the same way, on plain (not sharded) pub/sub: the
cluster passes every PUBLISH on to all its nodes, so the one connection, to
whichever node holds the first channel's slot, hears the wake-ups of every
business. Sharded pub/sub would need Redis 7 and a connection per node, for
messages that only come when a full cap frees a slot. If that node fails,
waits re-check every second until a new subscription succeeds.

Subscriptions go out one ``SUBSCRIBE`` at a time, each with every channel
asked for meanwhile: redis-py's pub/sub takes its connection on its first
command, and first commands sent together would each take one from the pool,
all but one never given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as redis
from redis.exceptions import RedisClusterException, RedisError

__all__ = ["BACKEND_ERRORS", "Wakeups"]

logger = logging.getLogger("yamarket_chats")

#: What a failing Redis or Redis Cluster raises (a cluster with no node to
#: answer raises RedisClusterException, which is no RedisError).
BACKEND_ERRORS: Final = (RedisError, RedisClusterException, OSError)
_SUBSCRIBE_TIMEOUT = 1.0  # seconds to wait for Redis to confirm a subscription
_PUBSUB_RETRY = 5.0  # seconds before subscribing again after pub/sub failed


class Wakeups:
    """One pub/sub connection announcing slots that other workers free."""

    def __init__(
        self, client: redis.Redis | redis.RedisCluster, on_free: Callable[[str], None]
    ) -> None:
        self._redis = client
        self._on_free = on_free
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Future[bool]] = {}
        self._unsent: list[str] = []  # channels asked for, not yet in a SUBSCRIBE
        self._sending = asyncio.Lock()
        self._down_until = 0.0
        # redis-py's asyncio RedisCluster has pub/sub from redis-py 8 on
        self._supported = callable(getattr(client, "pubsub", None))
        if not self._supported:
            logger.info(
                "this redis-py has no pub/sub for an asyncio RedisCluster (redis-py 8 has): "
                "waits for a parallel slot re-check every second"
            )

    async def watch(self, channel: str) -> bool:
        """Subscribe to `channel`; True once Redis confirmed it."""
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            if not self._supported or time.monotonic() < self._down_until:
                return False
            confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            self._unsent.append(channel)
        if self._unsent:
            await self._subscribe()
        if not confirmed.done():
            # (asyncio.wait leaves the shared future alone when it times out.)
            await asyncio.wait((confirmed,), timeout=_SUBSCRIBE_TIMEOUT)
        return confirmed.done() and confirmed.result()

    async def _subscribe(self) -> None:
        """Send a SUBSCRIBE of the channels not yet sent (none left: another sent ours)."""
        async with self._sending:
            channels, self._unsent = self._unsent, []
            if not channels:
                return
            if self._pubsub is None:
                self._pubsub = self._redis.pubsub()
            pubsub = self._pubsub
            try:
                await pubsub.subscribe(*channels)
            except BACKEND_ERRORS as exc:
                self._failed(exc)
                return
            except BaseException:
                self._unsent += channels  # cancelled, maybe unsent: the next watch sends them
                raise
            # The reader may have failed meanwhile, dropping this pub/sub: then nothing
            # reads it, and the next watch (after the retry delay) starts over.
            if self._reader is None and self._pubsub is pubsub:
                self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))

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
        except BACKEND_ERRORS as exc:
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
        self._unsent.clear()
        self._reader = None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            asyncio.get_running_loop().create_task(_quietly(pubsub.aclose()))

    async def close(self) -> None:
        """Stop listening and give the connection back."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, *BACKEND_ERRORS):
                await reader
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _quietly(pubsub.aclose())
        self._confirmed.clear()


async def _quietly(closing: Any) -> None:
    with contextlib.suppress(*BACKEND_ERRORS):
        await closing
