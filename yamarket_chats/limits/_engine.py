"""The one engine behind every limiter: turns, deadlines and waits over a store.

A store keeps the quotas (in this process, or in Redis for many workers) and
answers one atomic question, all or nothing: may this request go now? Either
it may, and the store has taken everything the request needs (its place in
the server's count, a bucket token, a parallel slot), or it tells why not: the
server's window is spent for N s, the bucket is empty for N s, or every slot
of the business is held (the earliest lease ends in N s, or that is unknown).

Everything else is here, written once for both stores:

- **turns**: per (business, method) one coroutine asks the store; the others
  queue behind it in order without asking. The first one through meets no
  queue object at all. While some coroutine waits for a slot of a business,
  newcomers of that business queue behind it rather than overtake it.
- **deadlines**: a known wait (window, bucket, or a holder sleeping ahead in
  the queue) that would end past the call's deadline raises `WaitTooLong`
  with its length at once; a wait for a slot gives up at the deadline with
  ``WaitTooLong(None)``.
- **waiting**: sleep through a window (plus a margin for the server's clock)
  or the bucket; wait for a freed slot, woken by a finish in this process or
  (Redis) a message from another worker, with the earliest lease's end or a
  backstop as timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Hashable, Mapping
from typing import Any, Final, Generic, Protocol, TypeVar

from .._closing import AsyncClosing
from ._headers import server_count
from ._protocol import WaitTooLong

__all__ = [
    "BUCKET",
    "GO",
    "GO_AHEAD",
    "SLOT",
    "WINDOW",
    "Answer",
    "Engine",
    "Store",
]

# The kinds of answer; compared by identity.
GO: Final = "go"
WINDOW: Final = "window"  # the server's window is spent for N s
BUCKET: Final = "bucket"  # the bucket has no token for N s
SLOT: Final = "slot"  # every parallel slot is held (the earliest lease ends in N s, or None)
#: (kind, seconds): seconds is None only for a slot whose end is unknown.
Answer = tuple[str, float | None]
#: The one answer that lets a request go; stores return this very object.
GO_AHEAD: Final[Answer] = (GO, 0.0)
_JOIN: Final[Answer] = (SLOT, None)

# Margin past the server's reset time before sending again: its clock and ours
# tick apart by a few milliseconds even on one machine.
RESET_MARGIN: Final = 0.05
# First and longest re-check of a full cap when a wake-up may be missed.
_BACKSTOP = (0.05, 1.0)
# Shortest sleep: a shorter wait is float dust, and asking again sooner only spins.
_MIN_SLEEP: Final = 0.001


class Lease(Protocol):
    """What the engine reads of a store's lease."""

    @property
    def key(self) -> Hashable:
        """The (business, method) it queues under."""

    @property
    def slots(self) -> Hashable:
        """The business's parallel slots (shared by its methods)."""


L = TypeVar("L", bound=Lease)


class Store(Protocol[L]):
    """Where the quotas are kept; see the module's docstring."""

    #: True when a freed slot may be missed (no wake-up came): waits re-check.
    may_miss_wakeups: bool

    def lease(self, business_id: int, method: str) -> L:
        """A lease for one request of (business, method), not yet taken."""

    def take(self, lease: L) -> Answer | Awaitable[Answer]:
        """Take all the request needs (`GO_AHEAD`), or nothing and say why.

        A store in this process answers at once; one across the network
        returns an awaitable (no coroutine is made where none is needed).
        """

    def finish(
        self, lease: L, status: int | None, server: tuple[int, float] | None
    ) -> float | Awaitable[float]:
        """Give the lease back; seconds until the server's window resets if spent, else 0.

        At once or awaitable, as `take`.
        """

    async def watch(self, slots: Hashable) -> bool:
        """Be told of slots freed elsewhere (True: the wake-ups will come)."""


class _Gate:
    """The coroutines queued behind the one holding a key's turn, in order."""

    __slots__ = ("queue", "until", "wake")

    def __init__(self) -> None:
        # Each queued coroutine's turn: True when it comes, False at its deadline.
        self.queue: deque[asyncio.Future[bool]] = deque()
        self.until = 0.0  # when the holder's known wait ends (loop time; 0: none)
        self.wake: asyncio.Future[bool] | None = None  # set when a slot is freed (slot gates)


# Keys whose turn is held; None: held, and nobody queued behind (no object made).
_Gates = dict[Hashable, "_Gate | None"]
_E = TypeVar("_E", bound="Engine[Any]")


class Engine(AsyncClosing, Generic[L]):
    """A `Limiter` over a `Store`: ``acquire`` waits its turn and the store's word."""

    def __init__(self, store: Store[L]) -> None:
        self._store = store
        self._method_gates: _Gates = {}
        self._slot_gates: _Gates = {}
        self.waited = 0.0  #: seconds requests spent waiting in `acquire`

    async def __aenter__(self: _E) -> _E:
        await self.start()
        return self

    async def start(self) -> None:
        """Check the store is usable (nothing to check in this process)."""

    async def close(self) -> None:
        """Release the store's resources (none in this process)."""

    async def acquire(self, business_id: int, method: str, deadline: float | None = None) -> L:
        """Wait until a request may go out; the caller must `finish` the lease.

        `deadline` (a loop time, i.e. ``time.monotonic()``): raise
        `WaitTooLong` at once when a known wait ends after it, and give up a
        wait for a parallel slot when it comes.
        """
        lease = self._lease(business_id, method, deadline)
        key = lease.key
        gates = self._method_gates
        if key in gates or lease.slots in self._slot_gates:
            return await self._queue(lease, deadline, None)
        gates[key] = None  # our turn: nobody else asks the store meanwhile
        try:
            answer = self._store.take(lease)
            if not isinstance(answer, tuple):
                answer = await answer
        except BaseException:
            _pass_turn(gates, key)
            raise
        if answer is GO_AHEAD:
            gate = gates.pop(key)  # (_pass_turn inlined: the path of nearly every request)
            if gate is not None:  # others queued meanwhile
                _hand_on(gates, key, gate)
            return lease
        return await self._queue(lease, deadline, answer)

    def _lease(self, business_id: int, method: str, deadline: float | None) -> L:
        """A new lease from the store; a store that waits for more than quota learns `deadline`."""
        return self._store.lease(business_id, method)

    async def finish(
        self, lease: L, status: int | None, headers: Mapping[str, str] | None
    ) -> float:
        """Give the lease back and learn the server's count from `headers`.

        Returns the seconds until the server's window resets when it is
        spent, 0 otherwise (so a 420 of a spent quota is told apart from one
        of the parallel cap).
        """
        server = server_count(headers) if headers is not None else None
        try:
            seconds = self._store.finish(lease, status, server)
            return seconds if isinstance(seconds, float) else await seconds
        finally:
            if self._slot_gates:
                self.wake(lease.slots)

    def wake(self, slots: Hashable) -> None:
        """A slot of `slots` was freed: the coroutine waiting for one asks again."""
        gate = self._slot_gates.get(slots)
        if gate is not None and gate.wake is not None:
            settle(gate.wake, True)

    async def _queue(self, lease: L, deadline: float | None, answer: Answer | None) -> L:
        """The slow path: wait (in turn, if `answer` is None) until the store says go."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        key = lease.key
        try:
            if answer is None:
                await self._enter(self._method_gates, key, deadline, loop)
            try:
                while True:
                    if answer is None:
                        joining = lease.slots in self._slot_gates
                        answer = _JOIN if joining else await _ask(self._store, lease)
                    kind, seconds = answer
                    if kind is GO:
                        return lease
                    if kind is SLOT:
                        answer = await self._wait_for_slot(lease, deadline, loop)
                        continue
                    answer = None
                    assert seconds is not None  # only a slot's end may be unknown
                    await self._sleep(key, kind, seconds, deadline, loop)
            finally:
                _pass_turn(self._method_gates, key)
        finally:
            self.waited += loop.time() - started

    async def _sleep(
        self,
        key: Hashable,
        kind: str,
        seconds: float,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Sleep through a window or a bucket, or raise at once if it ends too late."""
        wait = seconds + RESET_MARGIN if kind is WINDOW else seconds
        now = loop.time()
        if deadline is not None and now + wait > deadline:
            raise WaitTooLong(seconds)
        gate = _gate(self._method_gates, key)  # those queued behind read `until`
        gate.until = now + wait
        try:
            await asyncio.sleep(max(wait, _MIN_SLEEP))
        finally:
            gate.until = 0.0

    async def _wait_for_slot(
        self, lease: L, deadline: float | None, loop: asyncio.AbstractEventLoop
    ) -> Answer:
        """Wait until the business's cap has room; the answer that ended the wait."""
        slots = lease.slots
        store = self._store
        await self._enter(self._slot_gates, slots, deadline, loop)
        try:
            gate = _gate(self._slot_gates, slots)
            watching = False
            backstop = _BACKSTOP[0]
            while True:
                woken = gate.wake = loop.create_future()
                if not watching:
                    # Before asking: a slot freed after the answer wakes us.
                    watching = await store.watch(slots)
                answer = await _ask(store, lease)
                if answer[0] is not SLOT:
                    return answer
                timeout = answer[1]
                if timeout is not None:
                    timeout = max(timeout, _MIN_SLEEP)
                if store.may_miss_wakeups:
                    timeout = backstop if timeout is None else min(timeout, backstop)
                    backstop = min(2 * backstop, _BACKSTOP[1])
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise WaitTooLong(None)
                    timeout = left if timeout is None else min(timeout, left)
                await await_by(woken, timeout, loop)
        finally:
            _pass_turn(self._slot_gates, slots)

    @staticmethod
    async def _enter(
        gates: _Gates, key: Hashable, deadline: float | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Take the turn at `key`: at once if free, else after those queued before us."""
        if key not in gates:
            gates[key] = None
            return
        gate = _gate(gates, key)
        if deadline is not None and gate.until > deadline:
            raise WaitTooLong(gate.until - loop.time())  # the holder alone sleeps past it
        turn: asyncio.Future[bool] = loop.create_future()
        gate.queue.append(turn)
        try:
            came = await await_by(turn, None if deadline is None else deadline - loop.time(), loop)
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.result():
                _pass_turn(gates, key)  # the turn came with the cancellation: hand it on
            else:
                turn.cancel()
            raise
        if not came:
            raise WaitTooLong(max(0.0, gate.until - loop.time()) or None)


def settle(future: asyncio.Future[bool], value: bool) -> None:
    """Give `future` its result unless it has one (or was cancelled)."""
    if not future.done():
        future.set_result(value)


async def await_by(
    future: asyncio.Future[bool], timeout: float | None, loop: asyncio.AbstractEventLoop
) -> bool:
    """`future`'s result, or False once `timeout` seconds have passed.

    Not ``asyncio.wait_for``: on Python 3.10 and 3.11 it returns a result that
    came as its task was cancelled, and the cancellation is lost (a cancelled
    call would then go on and send). A plain ``await`` of a future always
    raises the cancellation.
    """
    timer = None if timeout is None else loop.call_later(max(timeout, 0.0), settle, future, False)
    try:
        return await future
    finally:
        if timer is not None:
            timer.cancel()


async def _ask(store: Store[L], lease: L) -> Answer:
    answer = store.take(lease)
    return answer if isinstance(answer, tuple) else await answer


def _gate(gates: _Gates, key: Hashable) -> _Gate:
    """The queue object of a held turn, made when first needed."""
    gate = gates[key]
    if gate is None:
        gate = gates[key] = _Gate()
    return gate


def _pass_turn(gates: _Gates, key: Hashable) -> None:
    """Give the turn at `key` to the next coroutine queued, or free it."""
    gate = gates.pop(key)
    if gate is not None:
        _hand_on(gates, key, gate)


def _hand_on(gates: _Gates, key: Hashable, gate: _Gate) -> None:
    queue = gate.queue
    while queue:
        turn = queue.popleft()
        if not turn.done():  # (not cancelled, nor past its deadline)
            gates[key] = gate
            turn.set_result(True)
            return
