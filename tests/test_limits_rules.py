"""The limit rules, through `Limits` on a virtual clock.

Each test states one rule of the in-process store (the reference model the
Redis store is held to): refunds, the server's window and its reset, the
estimate of requests in flight, deadlines, parallel slots. Waits take no real
time: the loop's clock jumps to the next timer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Mapping
from email.utils import formatdate

import pytest

from tests.virtual_clock import VirtualClock, run_virtual
from yamarket_chats.limits import NOT_SENT, Limits, RateLimit, WaitTooLong
from yamarket_chats.limits._engine import RESET_MARGIN

B = 7  # a business id
DATE = 1_704_067_200  # the server's Date (2024-01-01): far from our clock, so it is used


def answer(remaining: int, reset_in: int) -> Mapping[str, str]:
    """An answer's rate-limit headers: `remaining` left, the window resets in `reset_in` s."""
    return {
        "X-RateLimit-Resource-Remaining": str(remaining),
        "X-RateLimit-Resource-Until": formatdate(DATE + reset_in, usegmt=True),
        "Date": formatdate(DATE, usegmt=True),
    }


def limits(rate: RateLimit | None = None, cap: int | None = None) -> Limits:
    return Limits({"get_chat": rate, "get_chats": None}, cap)


async def refused(acquiring: Awaitable[object]) -> float | None:
    """The `retry_in` of the WaitTooLong the acquire raises."""
    with pytest.raises(WaitTooLong) as caught:
        await acquiring
    return caught.value.retry_in


def test_a_bucket_spreads_requests_after_its_burst() -> None:
    async def main(loop: VirtualClock) -> list[float]:
        limiter = limits(RateLimit(2, 10.0, burst=2))  # 2 at once, then one per 5 s
        started, times = loop.time(), []
        for _ in range(4):
            lease = await limiter.acquire(B, "get_chat")
            times.append(loop.time() - started)
            await limiter.finish(lease, 200, None)
        return times

    times = run_virtual(main)
    assert times[:2] == [0.0, 0.0]
    assert times[2] == pytest.approx(5.0, abs=0.002)
    assert times[3] == pytest.approx(10.0, abs=0.004)


def test_a_known_wait_past_the_deadline_raises_at_once_with_its_length() -> None:
    async def main(loop: VirtualClock) -> tuple[float | None, float]:
        limiter = limits(RateLimit(1, 60.0, burst=1))
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        loop.now += 15.0
        started = loop.time()
        retry_in = await refused(limiter.acquire(B, "get_chat", deadline=started + 10))
        return retry_in, loop.time() - started

    retry_in, spent = run_virtual(main)
    assert retry_in == pytest.approx(45.0, rel=1e-9)
    assert spent == 0.0  # raised before sleeping


@pytest.mark.parametrize("status", [500, 503, NOT_SENT])
def test_a_5xx_or_a_request_never_sent_gives_its_token_and_count_back(status: int) -> None:
    async def main(loop: VirtualClock) -> float:
        limiter = limits(RateLimit(2, 3600.0, burst=2))
        first = await limiter.acquire(B, "get_chat")
        await limiter.finish(first, 200, answer(2, 600))  # the server: 2 left (1 in flight)
        second = await limiter.acquire(B, "get_chat")
        await limiter.finish(second, status, answer(1, 600))
        started = loop.time()
        third = await limiter.acquire(B, "get_chat", deadline=started + 1)
        await limiter.finish(third, 200, None)
        return loop.time() - started

    assert run_virtual(main) == 0.0  # neither the bucket nor the server's count was spent


def test_a_2xx_or_4xx_spends_its_token() -> None:
    async def main(loop: VirtualClock) -> float | None:
        limiter = limits(RateLimit(2, 3600.0, burst=2))
        for status in (200, 404):
            await limiter.finish(await limiter.acquire(B, "get_chat"), status, None)
        return await refused(limiter.acquire(B, "get_chat", deadline=loop.time() + 1))

    assert run_virtual(main) == pytest.approx(1800.0, rel=1e-9)


def test_a_refund_after_the_bucket_drained_gives_nothing_extra() -> None:
    async def main(loop: VirtualClock) -> float | None:
        limiter = limits(RateLimit(1, 10.0, burst=1))
        lease = await limiter.acquire(B, "get_chat")
        loop.now += 10.0  # the bucket is empty again: the token is no longer spent
        await limiter.finish(lease, NOT_SENT, None)
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        return await refused(limiter.acquire(B, "get_chat", deadline=loop.time() + 1))

    assert run_virtual(main) == pytest.approx(10.0, rel=1e-9)


def test_a_spent_window_is_waited_out_to_its_reset_and_a_margin() -> None:
    async def main(loop: VirtualClock) -> tuple[float, float | None, float]:
        limiter = limits()
        reset_in = await limiter.finish(await limiter.acquire(B, "get_chat"), 200, answer(0, 30))
        loop.now += 10.0
        retry_in = await refused(limiter.acquire(B, "get_chat", deadline=loop.time() + 5))
        started = loop.time()
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        return reset_in, retry_in, loop.time() - started

    reset_in, retry_in, waited = run_virtual(main)
    assert reset_in == 30.0  # finish says the window is spent, for so long
    assert retry_in == pytest.approx(20.0, rel=1e-9)
    assert waited == pytest.approx(20.0 + RESET_MARGIN, abs=0.002)


def test_the_count_in_a_window_runs_down_and_a_new_window_starts_afresh() -> None:
    async def main(loop: VirtualClock) -> tuple[float | None, float]:
        limiter = limits()
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, answer(2, 60))
        for _ in range(2):  # the two the server has left
            await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        retry_in = await refused(limiter.acquire(B, "get_chat", deadline=loop.time() + 1))
        loop.now += 60.0  # the reset: the server counts afresh
        started = loop.time()
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        return retry_in, loop.time() - started

    retry_in, waited = run_virtual(main)
    assert retry_in == pytest.approx(60.0, rel=1e-9)
    assert waited == 0.0


def test_requests_in_flight_are_taken_off_the_servers_count() -> None:
    async def main(loop: VirtualClock) -> float | None:
        limiter = limits()
        leases = [await limiter.acquire(B, "get_chat") for _ in range(3)]
        # The first answer says 2 left; the other two requests may not be in
        # that count yet, so none is left for a fourth.
        await limiter.finish(leases[0], 200, answer(2, 60))
        return await refused(limiter.acquire(B, "get_chat", deadline=loop.time() + 1))

    assert run_virtual(main) == pytest.approx(60.0, rel=1e-9)


def test_a_late_answer_of_a_window_over_teaches_nothing() -> None:
    async def main(loop: VirtualClock) -> float:
        limiter = limits()
        early, late = [await limiter.acquire(B, "get_chat") for _ in range(2)]
        await limiter.finish(early, 200, answer(100, 3600))  # a new window, an hour long
        await limiter.finish(late, 200, answer(0, 10))  # one that ends far sooner: the old one
        started = loop.time()
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        return loop.time() - started

    assert run_virtual(main) == 0.0


def test_a_full_cap_wakes_the_waiter_when_a_slot_is_freed() -> None:
    async def main(loop: VirtualClock) -> tuple[bool, float]:
        limiter = limits(cap=1)
        held = await limiter.acquire(B, "get_chat")
        waiter = asyncio.ensure_future(limiter.acquire(B, "get_chats"))  # another method
        await asyncio.sleep(100)
        waiting = not waiter.done()
        freed_at = loop.time()
        await limiter.finish(held, 200, None)
        await limiter.finish(await waiter, 200, None)
        return waiting, loop.time() - freed_at

    waiting, woke_after = run_virtual(main)
    assert waiting
    assert woke_after == 0.0


def test_a_wait_for_a_slot_gives_up_at_the_deadline_with_no_known_end() -> None:
    async def main(loop: VirtualClock) -> tuple[float | None, float]:
        limiter = limits(cap=1)
        await limiter.acquire(B, "get_chat")
        started = loop.time()
        retry_in = await refused(limiter.acquire(B, "get_chat", deadline=started + 3))
        return retry_in, loop.time() - started

    retry_in, waited = run_virtual(main)
    assert retry_in is None
    assert waited == pytest.approx(3.0, abs=1e-6)


def test_callers_of_one_key_go_in_the_order_they_came() -> None:
    async def main(loop: VirtualClock) -> list[int]:
        limiter = limits(RateLimit(1, 1.0, burst=1))
        order: list[int] = []

        async def call(i: int) -> None:
            lease = await limiter.acquire(B, "get_chat")
            order.append(i)
            await limiter.finish(lease, 200, None)

        await asyncio.gather(*(call(i) for i in range(6)))
        return order

    assert run_virtual(main) == list(range(6))


def test_a_caller_behind_a_sleeper_that_ends_past_its_deadline_raises_at_once() -> None:
    async def main(loop: VirtualClock) -> tuple[float | None, float]:
        limiter = limits(RateLimit(1, 60.0, burst=1))
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        sleeper = asyncio.ensure_future(limiter.acquire(B, "get_chat"))  # sleeps 60 s
        await asyncio.sleep(1)
        started = loop.time()
        retry_in = await refused(limiter.acquire(B, "get_chat", deadline=started + 5))
        spent = loop.time() - started
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        return retry_in, spent

    retry_in, spent = run_virtual(main)
    assert retry_in == pytest.approx(59.0, rel=1e-9)
    assert spent == 0.0


def test_waits_add_up_in_waited() -> None:
    async def main(loop: VirtualClock) -> float:
        limiter = limits(RateLimit(1, 4.0, burst=1))
        for _ in range(3):
            await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)
        return limiter.waited

    assert math.isclose(run_virtual(main), 8.0, abs_tol=0.004)


def _cancel_holder_and_queued(ticks_between: int) -> tuple[list[bool], int]:
    """Cancel the holder of a turn, then, `ticks_between` loop turns later, the call behind it."""

    async def main(loop: VirtualClock) -> tuple[list[bool], int]:
        limiter = limits(RateLimit(1, 60.0, burst=1))
        await limiter.finish(await limiter.acquire(B, "get_chat"), 200, None)  # bucket empty
        holder = asyncio.create_task(limiter.acquire(B, "get_chat"))  # sleeps ~60 s
        queued = asyncio.create_task(limiter.acquire(B, "get_chat", deadline=loop.time() + 600))
        for _ in range(100):  # until the second call is queued behind the first
            gate = limiter._method_gates.get((B, "get_chat"))
            if gate is not None and gate.queue:
                break
            await asyncio.sleep(0)
        assert gate is not None and gate.queue
        holder.cancel()
        for _ in range(ticks_between):
            await asyncio.sleep(0)
        queued.cancel()
        results = await asyncio.gather(holder, queued, return_exceptions=True)
        cancelled = [isinstance(r, asyncio.CancelledError) for r in results]
        return cancelled, len(limiter._method_gates)

    return run_virtual(main)


def test_a_call_cancelled_as_its_turn_comes_stays_cancelled() -> None:
    # The holder of the turn and the call queued behind it are cancelled in one
    # tick: the holder hands the turn on as it unwinds, and the queued call,
    # whose turn has then come, must still end cancelled, not go and take the
    # quota (asyncio.wait_for of Python 3.10/3.11 would return the turn).
    cancelled, gates = _cancel_holder_and_queued(0)
    assert cancelled == [True, True]
    assert gates == 0  # nobody holds the turn


def test_a_turn_that_came_with_a_cancellation_is_handed_on() -> None:
    # One tick apart: the holder has handed the turn on (the queued call's turn
    # future has its result) when the queued call is cancelled; it must pass
    # the turn on again rather than keep the key held for good.
    cancelled, gates = _cancel_holder_and_queued(1)
    assert cancelled == [True, True]
    assert gates == 0
