"""One worker process of the shared-quota tests: reads until a deadline.

Usage: python -m tests.redis_worker URL KEY REDIS_URL BUSINESS CHAT AMOUNT PERIOD
Prints "ready" once its limiter and client are open, then reads a line
"START END" from stdin: wall-clock epoch seconds, the same for every worker.
At the end it prints the number of successful reads and the 420s its client saw.

``YAMARKET_TEST_CLOCK_SKEW=<seconds>`` runs the worker on a clock that far
ahead (or behind, when negative) of the machine's: ``time.time`` is shifted
for the library, while START and END stay on the true clock.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from yamarket_chats import ChatsClient, RateLimit
from yamarket_chats.redis_limits import RedisLimiter

true_time = time.time


def skew_clock(offset: float) -> None:
    """Make every ``time.time()`` in this process read `offset` seconds off."""
    time.time = lambda: true_time() + offset


async def main(argv: list[str]) -> None:
    url, key, redis_url, business, chat, amount, period = argv
    limits = {"get_chat": RateLimit(int(amount), float(period))}
    done = 0
    async with (
        RedisLimiter(redis_url, limits=limits, lease_seconds=1.0) as limiter,
        ChatsClient(api_key=key, base_url=url, limiter=limiter, backoff=0.01) as client,
    ):
        print("ready", flush=True)
        start, end = (await asyncio.to_thread(sys.stdin.readline)).split()
        await asyncio.sleep(max(0.0, float(start) - true_time()))

        async def reader() -> None:
            nonlocal done
            while true_time() < float(end):
                await client.get_chat(int(business), int(chat))
                done += 1

        await asyncio.gather(*(reader() for _ in range(6)))
        print(done, client.stats.rate_limited, flush=True)


if __name__ == "__main__":
    skew_clock(float(os.environ.get("YAMARKET_TEST_CLOCK_SKEW", "0")))
    asyncio.run(main(sys.argv[1:]))
