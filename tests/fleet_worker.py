"""One process of the fleet tests and benchmark: a sync, or a worker, into PostgreSQL.

Usage: python -m tests.fleet_worker URL KEY PG_URL BUSINESS... [--worker] [--follow]
       [--id NAME] [--lease S] [--lock-timeout S] [--interval S] [--max-businesses N]
       [--redis-url URL] [--quota N --window S] [--start EPOCH]

Prints ``ready`` once connected, waits for ``--start`` (wall-clock epoch, the
same for every process), runs, then prints its report as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from typing import Any

from yamarket_chats import ChatsClient, RateLimit
from yamarket_chats.fleet import run_worker
from yamarket_chats.ingest import sync
from yamarket_chats.limits import METHODS
from yamarket_chats.sinks import PostgresSink


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("pg_url")
    parser.add_argument("businesses", nargs="+", type=int)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--id")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--lock-timeout", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--max-businesses", type=int, help="default: run_worker's (64)")
    parser.add_argument("--redis-url")
    parser.add_argument("--quota", type=int, help="get_chat_history requests per window")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--start", type=float, default=0.0)
    args = parser.parse_args(argv)
    limits: dict[str, RateLimit | None] = dict.fromkeys(METHODS)
    if args.quota:
        limits["get_chat_history"] = RateLimit(args.quota, args.window)
    options: dict[str, Any] = {"backoff": 0.01, "max_backoff": 0.2}
    if args.redis_url:
        from yamarket_chats.redis_limits import RedisLimiter

        options["limiter"] = RedisLimiter(args.redis_url, limits=limits, lease_seconds=5.0)
    else:
        options["limits"] = limits
    async with (
        ChatsClient(api_key=args.key, base_url=args.url, **options) as client,
        PostgresSink(args.pg_url, lock_timeout=args.lock_timeout, lease_seconds=args.lease) as sink,
    ):
        await sink.open()
        print("ready", flush=True)
        await asyncio.sleep(max(0.0, args.start - time.time()))
        report: Any
        if args.worker or args.follow:
            # Without --max-businesses, the library's default, as the CLI's.
            cap = {} if args.max_businesses is None else {"max_businesses": args.max_businesses}
            report = await run_worker(
                client,
                args.businesses,
                sink,
                follow=args.follow,
                interval=args.interval,
                lease_seconds=args.lease,
                worker_id=args.id,
                **cap,
            )
        else:
            report = await sync(client, args.businesses, sink)
        print(json.dumps(dataclasses.asdict(report)), flush=True)
        if "limiter" in options:
            await options["limiter"].close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
