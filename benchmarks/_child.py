"""One measured read in its own process: ``python -m benchmarks._child MODE ...``.

Prints one JSON object on stdout. CPU time and peak RSS are this process's
alone (``resource.getrusage``); CPU is taken only around the read, after the
variant's imports and model classes are ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from .variants import FACTORIES, Count, Target


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    target = Target(
        args.url,
        args.key,
        args.business,
        args.concurrency,
        args.generated,
        args.baseline,
        args.as_users,
    )
    read = FACTORIES[args.variant](target)
    count = Count()

    async def timed() -> tuple[float, float]:
        cpu, wall = _cpu(), time.perf_counter()
        await read(count)
        return time.perf_counter() - wall, _cpu() - cpu

    if args.dry:  # imports and the reader only: what a count of the whole process subtracts
        return {"variant": args.variant, "messages": 0, "dry": True}
    rss_before = _rss_mb()
    wall, cpu = asyncio.run(timed())
    if count.messages != args.expect:
        raise SystemExit(f"{args.variant} read {count.messages} messages, expected {args.expect}")
    return {
        "variant": args.variant,
        "messages": count.messages,
        "pages": count.pages,
        "id_sum": count.id_sum,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _maxrss_mb(),
    }


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Walk one long chat with ``iter_chat_history``; RSS after 10k messages vs the end."""
    from yamarket_chats import ChatsClient
    from yamarket_chats.limits import METHODS

    checkpoint = min(10_000, args.expect // 2)

    async def walk() -> dict[str, Any]:
        limits = {m: None for m in METHODS}
        async with ChatsClient(api_key=args.key, base_url=args.url, limits=limits) as client:
            chat_ids = [chat.chat_id async for chat in client.iter_chats(args.business)]
            if len(chat_ids) != 1:
                raise SystemExit(f"expected one chat, got {len(chat_ids)}")
            n = last_id = 0
            at_checkpoint: tuple[float, float] = (0.0, 0.0)
            started = time.perf_counter()
            cpu = _cpu()
            async for message in client.iter_chat_history(args.business, chat_ids[0]):
                if message.message_id <= last_id:
                    raise SystemExit("messages out of order")
                last_id = message.message_id
                n += 1
                if n == checkpoint:
                    at_checkpoint = (_rss_mb(), _maxrss_mb())
            wall = time.perf_counter() - started
            cpu = _cpu() - cpu
        if n != args.expect:
            raise SystemExit(f"read {n} messages, expected {args.expect}")
        return {
            "messages": n,
            "requests": client.stats.requests,
            "wall_s": wall,
            "cpu_s": cpu,
            "checkpoint": checkpoint,
            "rss_at_checkpoint_mb": at_checkpoint[0],
            "peak_rss_at_checkpoint_mb": at_checkpoint[1],
            "rss_end_mb": _rss_mb(),
            "peak_rss_end_mb": _maxrss_mb(),
        }

    rss_start = _rss_mb()
    result = asyncio.run(walk())
    result["rss_start_mb"] = rss_start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._child")
    parser.add_argument("mode", choices=("throughput", "memory"))
    parser.add_argument("--variant", choices=sorted(FACTORIES), default="yamarket_chats")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--business", type=int, default=1001)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--generated", default=None, help="folder of the generated client")
    parser.add_argument("--baseline", default=None, help="folder of the baseline library")
    parser.add_argument("--expect", type=int, required=True, help="messages to read")
    parser.add_argument("--as-users", action="store_true", help="the library with limits at work")
    parser.add_argument("--dry", action="store_true", help="set up the variant, read nothing")
    args = parser.parse_args()
    result = throughput(args) if args.mode == "throughput" else memory(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
