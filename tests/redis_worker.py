"""One worker process of the shared-quota tests: reads until a deadline.

Usage: python -m tests.redis_worker URL KEY REDIS_URL BUSINESS CHAT AMOUNT PERIOD [options]
Prints "ready" once its limiter and client are open, then reads a line
"START END" from stdin: wall-clock epoch seconds, the same for every worker.
At the end it prints the number of successful reads and the 420s its client saw.

Options: ``--cluster`` (REDIS_URL is a node of a Redis Cluster) and
``--local-fraction F`` (``on_error="local"`` with that fraction).

``YAMARKET_TEST_CLOCK_SKEW=<seconds>`` runs the worker on a clock that far
ahead (or behind, when negative) of the machine's: ``time.time`` is shifted
for the library, while START and END stay on the true clock.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from yamarket_chats import ChatsClient, RateLimit
from yamarket_chats.redis_limits import RedisLimiter

true_time = time.time
READERS = 6


def skew_clock(offset: float) -> None:
    """Make every ``time.time()`` in this process read `offset` seconds off."""
    time.time = lambda: true_time() + offset


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tests.redis_worker")
    for name in ("url", "key", "redis_url", "business", "chat", "amount", "period"):
        parser.add_argument(name)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--local-fraction", type=float)
    return parser.parse_args(argv)


async def main(argv: list[str]) -> None:
    args = parse(argv)
    limits = {"get_chat": RateLimit(int(args.amount), float(args.period))}
    options: dict[str, Any] = {"limits": limits, "lease_seconds": 1.0}
    if args.cluster:
        options["cluster"] = True
    if args.local_fraction is not None:
        options.update(on_error="local", local_fraction=args.local_fraction)
    done = 0
    async with (
        RedisLimiter(args.redis_url, **options) as limiter,
        ChatsClient(api_key=args.key, base_url=args.url, limiter=limiter, backoff=0.01) as client,
    ):
        print("ready", flush=True)
        start, end = (await asyncio.to_thread(sys.stdin.readline)).split()
        await asyncio.sleep(max(0.0, float(start) - true_time()))

        async def reader() -> None:
            nonlocal done
            while true_time() < float(end):
                await client.get_chat(int(args.business), int(args.chat))
                done += 1

        await asyncio.gather(*(reader() for _ in range(READERS)))
        print(done, client.stats.rate_limited, flush=True)


if __name__ == "__main__":
    skew_clock(float(os.environ.get("YAMARKET_TEST_CLOCK_SKEW", "0")))
    asyncio.run(main(sys.argv[1:]))
