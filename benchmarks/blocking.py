"""The cost of the blocking facade: per call against the async client, and at start-up.

    python -m benchmarks.blocking [--calls 300] [--rounds 7] [--mode keep-alive|close]
                                  [--threads 4] [--quick]

Starts the fake Market API in its own process on loopback (limits off; in
the mode asked: ``keep-alive``, the default, where a call costs least and the
facade's share shows most, or ``close``, like the real API), then, per
round, in an order rotated each round:

- ``async``: `N` sequential ``await client.get_chats(b, limit=1)`` of one
  async client inside ``asyncio.run`` (the client made and warmed first);
- ``blocking``: the same `N` calls through one `blocking.ChatsClient`;
- ``bridge``: `N` round trips of a coroutine that does nothing through the
  facade's loop thread: the mechanism alone, no HTTP;
- ``walk``: one chat's history of 2,000 messages (pages of 100), async
  ``async for`` against the blocking ``for``;
- ``threads``: `N` calls by `T` threads sharing one facade, against `T`
  tasks of one async client (the client's own cap: 4 per business).

Start-up, each timed `rounds` times: a thread started and joined (the floor),
a facade constructed and closed, constructed + first call + closed, and the
same for the async client inside ``asyncio.run``; plus ``asyncio.run`` per call
with a client made each time, what blocking code writes without a facade.

Clients run with their client-side limits off, as in the throughput run.
Prints medians and the ratio blocking/async, paired by round (the same
machine load, give or take); returns them as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._fake import Fake, fake_server
from yamarket_chats import ChatsClient as AsyncChatsClient
from yamarket_chats.blocking import ChatsClient
from yamarket_chats.limits import METHODS

NO_LIMITS: dict[str, Any] = dict.fromkeys(METHODS)


def _options(fake: Fake) -> dict[str, Any]:
    return {"api_key": fake.api_key, "base_url": fake.url, "limits": NO_LIMITS}


def _history_chat(fake: Fake) -> int:
    with ChatsClient(**_options(fake)) as client:
        return client.get_chats(fake.business_id, limit=1).chats[0].chat_id


# -- one round of each way, seconds ------------------------------------------------


def run_async(fake: Fake, calls: int, chat_id: int) -> dict[str, float]:
    """Sequential calls, a walk, and `threads`-like concurrency, of one async client."""

    async def main() -> dict[str, float]:
        async with AsyncChatsClient(**_options(fake)) as client:
            await client.get_chats(fake.business_id, limit=1)  # warm: a pooled connection
            started = time.perf_counter()
            for _ in range(calls):
                await client.get_chats(fake.business_id, limit=1)
            sequential = time.perf_counter() - started
            started = time.perf_counter()
            async for _ in client.iter_chat_history(fake.business_id, chat_id):
                pass
            walk = time.perf_counter() - started
            return {"sequential": sequential, "walk": walk}

    return asyncio.run(main())


def run_async_tasks(fake: Fake, calls: int, tasks: int) -> float:
    async def main() -> float:
        async with AsyncChatsClient(**_options(fake)) as client:
            await client.get_chats(fake.business_id, limit=1)

            async def share() -> None:
                for _ in range(calls // tasks):
                    await client.get_chats(fake.business_id, limit=1)

            started = time.perf_counter()
            await asyncio.gather(*(share() for _ in range(tasks)))
            return time.perf_counter() - started

    return asyncio.run(main())


async def _nothing() -> None:
    return None


def run_blocking(fake: Fake, calls: int, chat_id: int, threads: int) -> dict[str, float]:
    """The same calls and walk through one facade, the bridge alone, and shared by threads."""
    with ChatsClient(**_options(fake)) as client:
        client.get_chats(fake.business_id, limit=1)
        started = time.perf_counter()
        for _ in range(calls):
            client.get_chats(fake.business_id, limit=1)
        sequential = time.perf_counter() - started
        started = time.perf_counter()
        for _ in client.iter_chat_history(fake.business_id, chat_id):
            pass
        walk = time.perf_counter() - started
        runner = client._runner
        started = time.perf_counter()
        for _ in range(calls):
            runner.run(_nothing())
        bridge = time.perf_counter() - started

        def share() -> None:
            for _ in range(calls // threads):
                client.get_chats(fake.business_id, limit=1)

        workers = [threading.Thread(target=share) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        shared = time.perf_counter() - started
    return {"sequential": sequential, "walk": walk, "bridge": bridge, "threads": shared}


def start_up(fake: Fake) -> dict[str, float]:
    """Seconds of each way to get going (and stop), once."""
    options = _options(fake)
    times: dict[str, float] = {}

    def timed(name: str, action: Callable[[], object]) -> None:
        started = time.perf_counter()
        action()
        times[name] = time.perf_counter() - started

    def thread() -> None:
        worker = threading.Thread(target=lambda: None)
        worker.start()
        worker.join()

    def first_call() -> None:
        with ChatsClient(**options) as client:
            client.get_chats(fake.business_id, limit=1)

    async def async_first_call() -> None:
        async with AsyncChatsClient(**options) as client:
            await client.get_chats(fake.business_id, limit=1)

    timed("thread start + join", thread)
    timed("blocking: construct + close", lambda: ChatsClient(**options).close())
    timed("blocking: construct + first call + close", first_call)
    timed(
        "async: asyncio.run(construct + first call + close)",
        lambda: asyncio.run(async_first_call()),
    )
    return times


# -- the run ----------------------------------------------------------------------


def measure(fake: Fake, calls: int, rounds: int, threads: int) -> dict[str, Any]:
    chat_id = _history_chat(fake)
    per_round: list[dict[str, float]] = []
    for round_ in range(rounds):
        ways: list[Callable[[], dict[str, float]]] = [
            lambda: {f"async {k}": v for k, v in run_async(fake, calls, chat_id).items()},
            lambda: {
                f"blocking {k}": v for k, v in run_blocking(fake, calls, chat_id, threads).items()
            },
            lambda: {"async threads": run_async_tasks(fake, calls, threads)},
        ]
        shift = round_ % len(ways)
        measured: dict[str, float] = {}
        for way in ways[shift:] + ways[:shift]:
            measured.update(way())
        per_round.append(measured)
        print(
            f"round {round_ + 1}/{rounds}: async {measured['async sequential'] / calls * 1e6:.0f}"
            f" µs/call, blocking {measured['blocking sequential'] / calls * 1e6:.0f} µs/call",
            flush=True,
        )
    starts = [start_up(fake) for _ in range(rounds)]
    return summarize(per_round, starts, calls, threads)


def summarize(
    per_round: list[dict[str, float]], starts: list[dict[str, float]], calls: int, threads: int
) -> dict[str, Any]:
    def median_us(key: str, per: int) -> float:
        return statistics.median(r[key] for r in per_round) / per * 1e6

    def paired(ours: str, theirs: str) -> float:
        return statistics.median(r[ours] / r[theirs] for r in per_round)

    result: dict[str, Any] = {
        "calls": calls,
        "rounds": len(per_round),
        "threads": threads,
        "us_per_call": {
            "async": median_us("async sequential", calls),
            "blocking": median_us("blocking sequential", calls),
            "bridge only (no HTTP)": median_us("blocking bridge", calls),
            "async, shared by tasks": median_us("async threads", calls),
            "blocking, shared by threads": median_us("blocking threads", calls),
        },
        "walk_ms": {
            "async": median_us("async walk", 1000),
            "blocking": median_us("blocking walk", 1000),
        },
        "ratio_blocking_vs_async": {
            "sequential calls": paired("blocking sequential", "async sequential"),
            "walk": paired("blocking walk", "async walk"),
            "threads vs tasks": paired("blocking threads", "async threads"),
        },
        "start_up_ms": {k: statistics.median(s[k] for s in starts) * 1e3 for k in starts[0]},
    }
    result["overhead_us_per_call"] = (
        result["us_per_call"]["blocking"] - result["us_per_call"]["async"]
    )
    return result


def asyncio_run_per_call(fake: Fake, calls: int) -> float:
    """Microseconds per call of ``asyncio.run`` with a new async client each time."""

    async def one() -> None:
        async with AsyncChatsClient(**_options(fake)) as client:
            await client.get_chats(fake.business_id, limit=1)

    started = time.perf_counter()
    for _ in range(calls):
        asyncio.run(one())
    return (time.perf_counter() - started) / calls * 1e6


def report(result: dict[str, Any]) -> str:
    lines = ["| measure | value |", "|---|---:|"]
    for name, us in result["us_per_call"].items():
        lines.append(f"| per call: {name} | {us:,.0f} µs |")
    lines.append(f"| per call: overhead of the facade | {result['overhead_us_per_call']:,.0f} µs |")
    for name, ms in result["walk_ms"].items():
        lines.append(f"| walk of 2,000 messages: {name} | {ms:,.1f} ms |")
    for name, ratio in result["ratio_blocking_vs_async"].items():
        lines.append(f"| ratio blocking / async: {name} | {ratio:.2f}x |")
    for name, ms in result["start_up_ms"].items():
        lines.append(f"| start-up: {name} | {ms:,.2f} ms |")
    lines.append(
        f"| per call: asyncio.run + a new async client each call | "
        f"{result['asyncio_run_per_call_us']:,.0f} µs |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blocking", description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=4, help="threads (and tasks) sharing")
    parser.add_argument("--mode", choices=("keep-alive", "close"), default="keep-alive")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run to check the harness, not to measure"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds = 8, 1
    extra = ("--keep-alive",) if args.mode == "keep-alive" else ()
    with fake_server(1, 2000, *extra) as fake:
        result = measure(fake, args.calls, args.rounds, args.threads)
        result["asyncio_run_per_call_us"] = asyncio_run_per_call(fake, max(args.calls // 10, 2))
    result["mode"] = args.mode
    print(f"mode {args.mode}, {args.calls} calls x {args.rounds} rounds, medians:")
    print(report(result))
    return result


if __name__ == "__main__":
    main()
