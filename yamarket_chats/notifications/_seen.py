"""The seen-set: which events were already received, so redeliveries are dropped.

Market may deliver one event several times; the receiver remembers a key per
event (:func:`~yamarket_chats.notifications.dedup_key`) in a :class:`SeenStore`.
"""

from __future__ import annotations

import collections
import time
from typing import Protocol

__all__ = ["MemorySeenStore", "SeenStore"]


class SeenStore(Protocol):
    """Remembers which events were received, to drop repeated deliveries.

    Share one store (e.g. on Redis: ``SET key 1 NX EX ttl``) between the
    workers of a service so a redelivery to another worker is dropped too.
    """

    async def add(self, key: str) -> bool:
        """Remember ``key``; True if it is new, False if it was already there."""
        ...

    async def discard(self, key: str) -> None:
        """Forget ``key`` (after an `add` whose answer was lost), if it is there."""
        ...


class MemorySeenStore:
    """The default :class:`SeenStore`: in-process, bounded by size and age.

    Keeps up to ``max_size`` keys, each for ``ttl`` seconds; past the size the
    oldest are forgotten first.
    """

    def __init__(self, max_size: int = 100_000, ttl: float = 24 * 3600.0) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
        self.max_size = max_size
        self.ttl = ttl
        self._keys: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"MemorySeenStore(size={len(self._keys)}, max_size={self.max_size})"

    async def add(self, key: str) -> bool:
        """Remember ``key``; True if it was not there (or had expired)."""
        now = time.monotonic()
        keys = self._keys
        # Expire from the oldest end; insertion order is expiry order.
        while keys:
            oldest, added = next(iter(keys.items()))
            if now - added < self.ttl:
                break
            del keys[oldest]
        if key in keys:
            return False
        keys[key] = now
        while len(keys) > self.max_size:
            keys.popitem(last=False)
        return True

    async def discard(self, key: str) -> None:
        """Forget ``key`` if it is there."""
        self._keys.pop(key, None)
