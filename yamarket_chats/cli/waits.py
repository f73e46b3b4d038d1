"""How long a sync waited on rate limits, on the wall clock.

The client's ``stats.waited_seconds`` sums the waits of every task: with
eight tasks waiting at once it grows eight times faster than the clock and
can exceed the run. What a user wants to know is the share of the run during
which some request was waiting (for a bucket, the server's ``-Until``, a free
slot): the union of the waits, not their sum. `WaitClock` measures it from
the client's own ``on_wait`` hook, so the limiter stays the plain one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..hooks import CallInfo, ClientHooks

__all__ = ["WaitClock"]

# Spells kept before folding the ones no open wait can reach (see `_fold`).
_KEEP = 16


class WaitClock(ClientHooks):
    """Wall-clock seconds during which at least one request waited on limits.

    Pass it as ``ChatsClient(..., hooks=clock)``. ``on_wait`` is awaited when a
    wait ends, ``seconds`` long: the wait was [now - seconds, now]. Ends come
    in time order, but a long wait reaches back over shorter ones that ended
    before it, so the clock keeps the union exactly: the merged spells a wait
    still open could reach, in order, and the total of the older ones. A wait
    belongs to a call and starts after the call did, so the spells that ended
    before the oldest running call began are folded into the total: what is
    kept is bounded by the calls in flight, not by the length of the run.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now  # the clock the waits are measured on
        self._folded = 0.0  # the spells no wait can reach any more
        self._spells: deque[tuple[float, float]] = deque()  # disjoint, in order
        self._open = 0.0  # their total
        self._calls: dict[int, float] = {}  # id of each call in flight -> when it began

    @property
    def seconds(self) -> float:
        """The waiting time so far (a wait counts once it has ended)."""
        return self._folded + self._open

    def add(self, start: float, end: float) -> None:
        """Count a wait from `start` to `end`; no end seen so far is later than `end`."""
        spells = self._spells
        while spells and spells[-1][1] >= start:  # overlaps the last spell: merge
            first, last = spells.pop()
            self._open -= last - first
            start, end = min(start, first), max(end, last)
        spells.append((start, end))
        self._open += end - start
        if len(spells) > _KEEP:
            self._fold()

    def _fold(self) -> None:
        horizon = min(self._calls.values(), default=self._now())
        spells = self._spells
        while len(spells) > 1 and spells[0][1] < horizon:
            first, last = spells.popleft()
            self._open -= last - first
            self._folded += last - first

    async def on_start(self, call: CallInfo) -> None:
        """A call begins: its waits start from now on."""
        self._calls[id(call)] = self._now()

    async def on_wait(self, call: CallInfo, reason: str, seconds: float) -> None:
        """A wait of `seconds` on limits ended now."""
        now = self._now()
        self.add(now - seconds, now)

    async def on_end(self, call: CallInfo) -> None:
        """A call ended: none of its waits is open any more."""
        self._calls.pop(id(call), None)
