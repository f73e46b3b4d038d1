"""Many businesses acquiring through one Redis limiter at once: latency, errors, connections.

    python -m benchmarks.redis_acquire [--businesses 100 500 1000 2000] [--rounds 3]

Each business runs 4 coroutines (its parallel cap) of 2 requests each, all
started together: acquire (timed), 10 ms "in flight", finish with the
server's headers. Per count of businesses, in one process against one
throwaway redis-server, each variant for ``--rounds`` rounds:

- ``in-process``: `Limits`, the floor: the engine with no network at all;
- ``before, default pool``: the Redis limiter as it was, every script call
  asking redis-py's pool (100 connections) at once, with no bound of its own;
- ``before, 4,096 connections``: the same with a pool big enough not to fail;
- ``after, default pool``: the limiter as it is: at most 16 script calls in
  flight, the rest waiting their turn in the limiter.

Reports the medians over rounds of acquire p50 and p99, the errors out of all
acquires, and the most connections the limiter's pool held. Written to
benchmarks/results/redis_acquire.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from yamarket_chats.limits import Limiter, Limits
from yamarket_chats.limits._redis_store import Calls
from yamarket_chats.redis_limits import RedisLimiter

from ._limiter import _answer_headers, _redis_server

RESULTS = Path(__file__).parent / "results" / "redis_acquire.md"
TASKS = 4  # per business: its parallel cap
REQUESTS = 2  # per task
IN_FLIGHT = 0.010  # seconds a request holds its slot


async def _run(limiter: Limiter, businesses: int) -> tuple[list[float], int]:
    """Every business's coroutines at once: each acquire's latency, and the errors."""
    latencies: list[float] = []
    errors = 0
    headers = _answer_headers()

    async def work(business_id: int) -> None:
        nonlocal errors
        for _ in range(REQUESTS):
            started = time.monotonic()
            try:
                lease = await limiter.acquire(business_id, "get_chat_history", started + 60)
            except Exception:  # what the benchmark counts
                errors += 1
                continue
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(IN_FLIGHT)
            await limiter.finish(lease, 200, headers)

    await asyncio.gather(*(work(b) for b in range(1, businesses + 1) for _ in range(TASKS)))
    return latencies, errors


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def _pool_size(client: redis.Redis) -> int:
    pool: Any = client.connection_pool
    return len(pool._in_use_connections) + len(pool._available_connections)


async def _redis_round(
    url: str, businesses: int, pool: int | None, bounded: bool
) -> dict[str, float]:
    client = redis.Redis.from_url(url, **({} if pool is None else {"max_connections": pool}))
    limiter = RedisLimiter(client=client, prefix=f"bench{time.monotonic_ns()}")
    if not bounded:  # the old path: every script call goes to the pool at once
        limiter._redis_store.calls = Calls(10**9)
    most = 0

    async def sample() -> None:
        nonlocal most
        while True:
            most = max(most, _pool_size(client))
            await asyncio.sleep(0.005)

    try:
        async with limiter:
            sampler = asyncio.create_task(sample())
            latencies, errors = await _run(limiter, businesses)
            sampler.cancel()
    finally:
        await client.aclose()
    return _figures(latencies, errors, max(most, 0))


async def _local_round(businesses: int) -> dict[str, float]:
    async with Limits({}, TASKS) as limiter:
        latencies, errors = await _run(limiter, businesses)
    return _figures(latencies, errors, 0)


def _figures(latencies: list[float], errors: int, connections: int) -> dict[str, float]:
    return {
        "p50_ms": _quantile(latencies, 0.50) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
        "errors": errors,
        "acquires": len(latencies) + errors,
        "connections": connections,
    }


VARIANTS: dict[str, Callable[[str, int], Any]] = {
    "in-process": lambda url, n: _local_round(n),
    "before, default pool": lambda url, n: _redis_round(url, n, None, bounded=False),
    "before, 4,096 connections": lambda url, n: _redis_round(url, n, 4096, bounded=False),
    "after, default pool": lambda url, n: _redis_round(url, n, None, bounded=True),
}


def measure(url: str, counts: list[int], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for businesses in counts:
        for name, variant in VARIANTS.items():
            runs = [asyncio.run(variant(url, businesses)) for _ in range(rounds)]
            row: dict[str, Any] = {"businesses": businesses, "variant": name}
            for field in ("p50_ms", "p99_ms", "connections"):
                row[field] = statistics.median(run[field] for run in runs)
            row["errors"] = sum(run["errors"] for run in runs)
            row["acquires"] = sum(run["acquires"] for run in runs)
            rows.append(row)
            print(row, flush=True)
    return rows


def report(rows: list[dict[str, Any]], rounds: int) -> str:
    lines = [
        "# Acquiring through Redis: many businesses at once",
        "",
        f"`python -m benchmarks.redis_acquire` (one process, a local redis-server 7;"
        f" each business: {TASKS} coroutines x {REQUESTS} requests of {IN_FLIGHT * 1000:.0f} ms,"
        f" all started together; medians over {rounds} rounds, errors summed).",
        "",
        "| businesses | variant | acquire p50 | acquire p99 | errors | connections |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        share = row["errors"] / row["acquires"] if row["acquires"] else 0.0
        lines.append(
            f"| {row['businesses']:,} | {row['variant']} | {row['p50_ms']:.0f} ms"
            f" | {row['p99_ms']:.0f} ms | {row['errors']:,} ({share:.0%})"
            f" | {row['connections']:.0f} |"
        )
    lines += [
        "",
        "Errors are `QuotaBackendError` (redis-py's `Too many connections`). The"
        " connections column is the most the limiter's pool held (sampled every 5 ms):"
        " after, 16 script calls and the pub/sub connection at most, at any count.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.redis_acquire", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--businesses", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with _redis_server() as url:
        if url is None:
            raise SystemExit("redis-server is not installed")
        rows = measure(url, args.businesses, args.rounds)
    text = report(rows, args.rounds)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return rows


if __name__ == "__main__":
    main()
