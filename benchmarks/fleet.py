"""A fleet on one machine: worker processes, one Redis, one PostgreSQL; and sink throughput.

    python -m benchmarks.fleet [--workers 4 | --workers 1,2,4] [--runs 1] [--max-businesses N]
                               [--businesses 20] [--quota 10] [--window 2]
                               [--windows 6] [--chats 10] [--messages 1000]
                               [--sync-chats 20] [--sync-messages 2000] [--rounds 3]
                               [--only fleet|throughput] [--out benchmarks/results] [--quick]

**Fleet.** The fake Market API runs in this process with a scaled quota of
``--quota`` history requests per ``--window`` seconds per cabinet (fixed
windows, like the API's hour). ``--workers`` processes (`yamarket_chats.fleet`
`run_worker`, ``tests/fleet_worker.py``) share ``--businesses`` cabinets
through leases in a throwaway PostgreSQL and the quota through a throwaway
Redis (`RedisLimiter`), all starting at one moment, each with the worker's
default ``max_businesses`` (what the CLI runs) unless ``--max-businesses`` is
given. Measured over ``--windows`` whole windows while every cabinet still
has pages to fetch: the **quota use**, the share of the allowed requests
served (all cabinets' quota over those windows; target >= 95%), 420 answers
(target 0); at the end, every message of the fake stored exactly once; and
messages/s over the whole run (every message of every cabinet, start to the
last worker's exit). A list of worker counts (``--workers 1,2,4``), each run
``--runs`` times, gives the scaling table (medians).

**Throughput.** The fake in its own process, limits off; one client syncs one
cabinet of ``--sync-chats`` x ``--sync-messages`` into nothing (the read alone), into
SQLite and into PostgreSQL, in rotated order over ``--rounds`` rounds:
messages/s, median.

Writes ``fleet.md`` and ``fleet.json`` to ``--out`` (not with ``--quick``).
Needs redis-server and the PostgreSQL server binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from tests.pg_server import postgres_server
from tests.servers import RedisServer
from yamarket_chats import Chat, ChatMessage, ChatsClient, SQLiteSink
from yamarket_chats.ingest import ChatState, Sink, sync
from yamarket_chats.limits import METHODS
from yamarket_chats.sinks import PostgresSink
from yamarket_chats.testing import FakeMarketConfig, run_fake_server

from ._fake import fake_server

REPO = Path(__file__).resolve().parent.parent
FIRST_BUSINESS = 5001


# -- the fleet ------------------------------------------------------------------------


async def _worker(
    args: argparse.Namespace,
    url: str,
    key: str,
    pg_url: str,
    redis_url: str,
    businesses: tuple[int, ...],
    number: int,
    start: float,
) -> asyncio.subprocess.Process:
    """Worker process ``number``, started at ``start`` (epoch) like every other."""
    cmd = [sys.executable, "-m", "tests.fleet_worker", url, key, pg_url]
    cmd += [*map(str, businesses), "--worker", "--id", f"w{number}", "--start", str(start)]
    if args.max_businesses is not None:
        cmd += ["--max-businesses", str(args.max_businesses)]
    cmd += ["--redis-url", redis_url]
    cmd += ["--quota", str(args.quota), "--window", str(args.window)]
    return await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def fleet(
    args: argparse.Namespace, workers: int, pg_url: str, redis_url: str
) -> dict[str, Any]:
    """One run of ``workers`` worker processes over every cabinet, from a fresh database."""
    businesses = tuple(range(FIRST_BUSINESS, FIRST_BUSINESS + args.businesses))
    config = FakeMarketConfig(
        businesses=businesses,
        chats_per_business=args.chats,
        messages_per_chat=args.messages,
        quota_window=args.window,
        quotas={"get_chat_history": args.quota, "get_chats": 1000},
    )
    pages = args.chats * math.ceil(args.messages / 100)
    if pages < args.quota * (args.windows + 3):
        raise SystemExit(
            f"each cabinet needs >= {args.quota * (args.windows + 3)} history pages to stay busy"
            f" for {args.windows} windows (+3 to start and end); it has {pages}:"
            " raise --chats or --messages"
        )
    async with run_fake_server(config) as fake:
        start = time.time() + 3.0 + workers * 0.5  # every worker connected by then
        procs = [
            await _worker(args, fake.url, fake.api_key, pg_url, redis_url, businesses, i, start)
            for i in range(workers)
        ]
        outputs = [await p.communicate() for p in procs]
        finished = time.time()
        if any(p.returncode != 0 for p in procs):
            raise RuntimeError(f"a worker failed: {outputs}")
        reports = [json.loads(out.decode().splitlines()[-1]) for out, _ in outputs]
        # Measure from the first whole window after a window to get going, for --windows.
        first = (math.floor(start / args.window) + 2) * args.window
        last = first + args.windows * args.window
        offset = time.time() - time.monotonic()  # the journal's clock is monotonic
        served = sum(
            1
            for e in fake.journal.entries("get_chat_history", status=200)
            if first <= e.started + offset < last
        )
        busy_until = {
            b: max(e.started for e in fake.journal.entries("get_chat_history", business_id=b))
            + offset
            for b in businesses
        }
        rate_limited = sum(1 for e in fake.journal if e.status == 420)
        allowed = args.businesses * args.quota * args.windows
        total = args.businesses * args.chats * args.messages
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetchval("SELECT count(*) FROM yamarket_chats.messages")
            distinct = await conn.fetchval(
                "SELECT count(DISTINCT (business_id, chat_id, message_id))"
                " FROM yamarket_chats.messages"
            )
        finally:
            await conn.close()
    result = {
        "workers": workers,
        "max_businesses": args.max_businesses or "default",
        "businesses": args.businesses,
        "quota": f"{args.quota} get_chat_history per {args.window:g} s per cabinet",
        "windows": args.windows,
        "allowed": allowed,
        "served": served,
        "served_share": served / allowed,
        "rate_limited_420": rate_limited,
        "messages_expected": total,
        "messages_stored": rows,
        "messages_distinct": distinct,
        "syncs_per_worker": [r["synced"] for r in reports],
        "every_cabinet_busy_through_the_measure": min(busy_until.values()) >= last,
        "elapsed_seconds": finished - start,
        "messages_per_second": total / (finished - start),
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


# -- throughput of the sinks --------------------------------------------------------


class NullSink:
    """Keeps checkpoints in memory and stores nothing: the read alone."""

    def __init__(self) -> None:
        self.states: dict[int, dict[int, ChatState]] = {}

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        return self.states.get(business_id, {})

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        pass

    async def save_page(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage], state: ChatState
    ) -> None:
        self.states.setdefault(business_id, {})[chat_id] = state

    async def __aenter__(self) -> NullSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


async def one_sync(url: str, key: str, business: int, sink: Any, expect: int) -> float:
    limits = dict.fromkeys(METHODS)
    async with ChatsClient(api_key=key, base_url=url, limits=limits) as client, sink:
        if isinstance(sink, PostgresSink):
            await sink.open()  # connecting is not storing (SQLite opens in its constructor)
        report = await sync(client, [business], sink)
    assert report.messages == expect, report
    return report.messages_per_second


def throughput(args: argparse.Namespace, pg: Any) -> dict[str, list[float]]:
    expect = args.sync_chats * args.sync_messages
    rates: dict[str, list[float]] = {"read alone": [], "sqlite": [], "postgres": []}
    with (
        fake_server(args.sync_chats, args.sync_messages) as fake,
        tempfile.TemporaryDirectory() as d,
    ):
        sinks: dict[str, Callable[[int], Sink]] = {
            "read alone": lambda n: NullSink(),
            "sqlite": lambda n: SQLiteSink(Path(d) / f"chats{n}.sqlite3"),
            "postgres": lambda n: PostgresSink(pg.create_database()),
        }
        names = list(sinks)
        asyncio.run(one_sync(fake.url, fake.api_key, fake.business_id, NullSink(), expect))
        for n in range(args.rounds):
            order = names[n % 3 :] + names[: n % 3]
            for name in order:
                sink = sinks[name](n)
                rate = asyncio.run(one_sync(fake.url, fake.api_key, fake.business_id, sink, expect))
                rates[name].append(rate)
                print(f"round {n + 1}: {name:10} {rate:,.0f} messages/s", flush=True)
    return rates


# -- main -------------------------------------------------------------------------------


def scaling(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per worker count: the medians of its runs' quota use and messages/s."""
    counts = sorted({r["workers"] for r in runs})
    rows = []
    for n in counts:
        mine = [r for r in runs if r["workers"] == n]
        rows.append(
            {
                "workers": n,
                "runs": len(mine),
                "served_share": statistics.median(r["served_share"] for r in mine),
                "served_share_min": min(r["served_share"] for r in mine),
                "messages_per_second": statistics.median(r["messages_per_second"] for r in mine),
                "rate_limited_420": sum(r["rate_limited_420"] for r in mine),
            }
        )
    return rows


def fleet_lines(run: dict[str, Any], table: list[dict[str, Any]]) -> list[str]:
    """The fleet sections of ``fleet.md``: one run in detail, then the scaling table."""
    lines = [
        f"## {run['workers']} workers, {run['businesses']} cabinets, one Redis, one PostgreSQL",
        "",
        "| measure | value |",
        "|---|---|",
        f"| quota | {run['quota']} |",
        f"| max_businesses per worker | {run.get('max_businesses', 'default')} |",
        f"| allowed requests in {run['windows']} windows | {run['allowed']} |",
        f"| served (quota use) | {run['served']} ({run['served_share']:.1%}) |",
        f"| 420 answers | {run['rate_limited_420']} |",
        f"| messages stored / distinct / expected | {run['messages_stored']} / "
        f"{run['messages_distinct']} / {run['messages_expected']} |",
        f"| cabinet syncs per worker | {run['syncs_per_worker']} |",
        f"| whole run | {run['elapsed_seconds']:.1f} s, "
        f"{run['messages_per_second']:,.0f} messages/s |",
        "",
    ]
    if len(table) > 1 or (table and table[0]["runs"] > 1):
        lines += [
            "## Scaling: the same cabinets and quota, 1 to N workers",
            "",
            "Quota use: the share of all cabinets' allowed history requests served over"
            f" {run['windows']} whole windows while every cabinet has pages left;"
            " messages/s: every message over the whole run. Medians of the runs.",
            "",
            "| workers | runs | quota use (median) | lowest | messages/s (median) | 420s |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['workers']} | {r['runs']} | {r['served_share']:.1%} | "
            f"{r['served_share_min']:.1%} | {r['messages_per_second']:,.0f} | "
            f"{r['rate_limited_420']} |"
            for r in table
        ]
        lines.append("")
    return lines


def throughput_lines(sync: dict[str, Any], rates: dict[str, list[float]]) -> list[str]:
    """The sink throughput section of ``fleet.md``."""
    medians = {name: statistics.median(v) for name, v in rates.items()}
    lines = [
        f"## One cabinet, {sync['chats']} chats x {sync['messages']} messages, limits off",
        "",
        "| into | messages/s (median) | min-max | vs read alone |",
        "|---|---|---|---|",
    ]
    for name, values in rates.items():
        lines.append(
            f"| {name} | {medians[name]:,.0f} | {min(values):,.0f}-{max(values):,.0f} | "
            f"{medians[name] / medians['read alone']:.2f} |"
        )
    return lines


def write(out: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``fleet.md`` and ``fleet.json``; a part not run this time is kept from the last file."""
    try:
        kept = json.loads((out / "fleet.json").read_text())
    except (OSError, ValueError):
        kept = {}
    merged = {**kept, **{k: v for k, v in results.items() if v}}
    merged.setdefault("sync", {"chats": args.sync_chats, "messages": args.sync_messages})
    if results.get("fleet") and not results.get("scaling"):
        merged.pop("scaling", None)  # a table of another run would not match the detail
    lines = ["# Fleet benchmark (`python -m benchmarks.fleet`)", ""]
    lines += [f"Command: `python -m benchmarks.fleet {' '.join(sys.argv[1:])}`", ""]
    kept_parts = [k for k in ("fleet", "throughput") if merged.get(k) and not results.get(k)]
    if kept_parts:
        lines += [f"({' and '.join(kept_parts)}: from the previous run, not run this time)", ""]
    if merged.get("fleet"):
        lines += fleet_lines(merged["fleet"], merged.get("scaling", []))
    if merged.get("throughput"):
        lines += throughput_lines(merged["sync"], merged["throughput"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.md").write_text("\n".join(lines).rstrip("\n") + "\n")
    (out / "fleet.json").write_text(json.dumps(merged, indent=2))
    print(f"wrote {out / 'fleet.md'}")


def targets_met(runs: list[dict[str, Any]]) -> bool:
    """Every run served >= 95% of the quota, with no 420, every message stored once."""
    return all(
        run["served_share"] >= 0.95
        and run["rate_limited_420"] == 0
        and run["messages_stored"] == run["messages_distinct"] == run["messages_expected"]
        for run in runs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        type=lambda v: [int(n) for n in v.split(",")],
        default=[4],
        help="worker processes; a list (1,2,4) for the scaling table",
    )
    parser.add_argument("--runs", type=int, default=1, help="of each worker count")
    parser.add_argument(
        "--max-businesses", type=int, help="per worker (default: the worker's default)"
    )
    parser.add_argument("--businesses", type=int, default=20)
    parser.add_argument("--quota", type=int, default=10, help="history requests per window")
    parser.add_argument("--window", type=float, default=2.0, help="seconds")
    parser.add_argument("--windows", type=int, default=6, help="windows measured")
    parser.add_argument("--chats", type=int, default=10, help="per cabinet")
    parser.add_argument("--messages", type=int, default=1000, help="per chat")
    parser.add_argument("--sync-chats", type=int, default=20, help="throughput run: chats")
    parser.add_argument("--sync-messages", type=int, default=2000, help="throughput: per chat")
    parser.add_argument("--rounds", type=int, default=3, help="of the throughput run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--only", choices=["fleet", "throughput"], help="run one part")
    parser.add_argument("--quick", action="store_true", help="tiny run, writes nothing")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.businesses, args.quota, args.windows = [2], 4, 5, 2
        args.chats, args.messages, args.rounds = 5, 500, 1
        args.sync_chats, args.sync_messages = 4, 500
    redis = RedisServer()
    redis.start()
    try:
        # The server's defaults: durable. The sink turns synchronous_commit off for its
        # own sessions (see PostgresSink), as SQLite's WAL + synchronous=NORMAL does.
        with postgres_server(settings={"fsync": "on", "full_page_writes": "on"}) as pg:
            runs: list[dict[str, Any]] = []
            rates: dict[str, list[float]] = {}
            if args.only != "throughput":
                for _ in range(args.runs):  # the counts interleaved: drift spreads over all
                    for n in args.workers:
                        runs.append(asyncio.run(fleet(args, n, pg.create_database(), redis.url)))
            if args.only != "fleet":
                rates = throughput(args, pg)
    finally:
        redis.stop()
    table = scaling(runs)
    for row in table:
        print(
            f"{row['workers']} workers: quota use {row['served_share']:.1%} (median of"
            f" {row['runs']}), {row['messages_per_second']:,.0f} messages/s",
            flush=True,
        )
    for name, values in rates.items():
        print(f"{name}: median {statistics.median(values):,.0f} messages/s")
    ok = targets_met(runs)
    print("fleet targets met" if ok else "FLEET TARGETS MISSED", flush=True)
    if not args.quick:
        most = max((r["workers"] for r in runs), default=0)
        detail = next((r for r in reversed(runs) if r["workers"] == most), None)
        results = {
            "fleet": detail,
            "scaling": table if len(runs) > 1 else [],
            "throughput": rates,
            "sync": {"chats": args.sync_chats, "messages": args.sync_messages} if rates else {},
        }
        write(args.out, args, results)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
