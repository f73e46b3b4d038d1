"""What metrics cost: nothing when unused, a little when on, and one scrape.

    python -m benchmarks.metrics_cost [--rounds 7] [--mode close|keep-alive]
                                      [--baseline-path DIR] [--instructions] [--quick]

Starts the fake Market API in its own process on loopback (limits off; 4
businesses x 10 chats x 500 messages), then per round, in an order rotated
each round, syncs everything into a sink that keeps nothing (so the sync
path, not a database, is measured), each variant in a fresh child process,
timing the child's CPU seconds around the sync only:

- ``off``: ``sync(...)`` with no observer (what every user who does not ask
  for metrics runs);
- ``observer``: ``sync(..., observer=SyncMetrics(...))``;
- ``observer + scrapes``: the same, and a `ChatsCollector` exposition
  (``generate_latest``) every 10 ms of the sync: hundreds of times the
  rate of a Prometheus scrape every 15 s;
- ``baseline`` (with ``--baseline-path DIR``, a checkout of another commit,
  e.g. ``git archive REF | tar -x -C DIR``): the sync of that commit, which
  has no observer at all: ``off`` / ``baseline`` is what the unused feature
  costs.

With ``--instructions``, each variant also runs once under valgrind's
callgrind (instructions do not move with the machine's load; a dry run,
nothing synced, is subtracted). Also: milliseconds of one scrape of a
collector holding 100 and 1,000 businesses x 7 methods.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._fake import REPO, Fake, fake_server

BUSINESSES = (1, 2, 3, 4)
VARIANTS = ("off", "observer", "observer + scrapes")


class NullSink:
    """A sink that stores nothing: the sync path alone."""

    async def load_state(self, business_id: int) -> Mapping[int, Any]:
        return {}

    async def save_chats(self, business_id: int, chats: Sequence[Any]) -> None:
        return None

    async def save_page(self, business_id: int, chat_id: int, messages: Any, state: Any) -> None:
        return None


async def _child_sync(variant: str, url: str, key: str, dry: bool) -> dict[str, float]:
    from yamarket_chats import ChatsClient, sync
    from yamarket_chats.limits import METHODS

    options: dict[str, Any] = {}
    scrapes = 0
    async with ChatsClient(api_key=key, base_url=url, limits=dict.fromkeys(METHODS)) as client:
        stop = asyncio.Event()
        scraper = None
        if variant != "off" and variant != "baseline":
            from yamarket_chats.metrics import ChatsCollector, SyncMetrics

            options["observer"] = syncs = SyncMetrics(BUSINESSES)
            if variant == "observer + scrapes":
                scraper = asyncio.ensure_future(_scrape(ChatsCollector(client, syncs), stop))
        if dry:
            return {"cpu": 0.0, "messages": 0, "scrapes": 0, "from": _package()}
        started = time.process_time()
        report = await sync(client, BUSINESSES, NullSink(), **options)
        cpu = time.process_time() - started
        stop.set()
        if scraper is not None:
            scrapes = await scraper
    return {"cpu": cpu, "messages": report.messages, "scrapes": scrapes, "from": _package()}


def _package() -> str:
    import yamarket_chats

    return str(Path(yamarket_chats.__file__).parent.parent)


async def _scrape(collector: Any, stop: asyncio.Event) -> int:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    count = 0
    while not stop.is_set():
        generate_latest(registry)
        count += 1
        await asyncio.sleep(0.01)
    return count


def _run_child(
    fake: Fake, variant: str, path: str | None, *, dry: bool = False, valgrind: bool = False
) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [path or str(REPO), str(REPO)]))
    # This file by its path: a baseline checkout on PYTHONPATH has its own `benchmarks`.
    command = [sys.executable, __file__, "--child", variant, fake.url]
    command += [fake.api_key] + (["--dry"] if dry else [])
    out_file = None
    if valgrind:
        with tempfile.NamedTemporaryFile(suffix=".callgrind", delete=False) as out:
            out_file = out.name
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env, cwd="/")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if out_file is not None:
        found = re.search(r"Collected : (\d+)", done.stderr)
        result["instructions"] = int(found.group(1)) if found else 0
        os.unlink(out_file)
    return result


def measure(fake: Fake, rounds: int, baseline: str | None, instructions: bool) -> dict[str, Any]:
    variants = [*VARIANTS, *(["baseline"] if baseline else [])]
    per_round: list[dict[str, dict[str, Any]]] = []
    for round_ in range(rounds):
        shift = round_ % len(variants)
        measured = {}
        for variant in variants[shift:] + variants[:shift]:
            measured[variant] = _run_child(
                fake, variant, baseline if variant == "baseline" else None
            )
        per_round.append(measured)
        cpu = ", ".join(f"{v} {m['cpu']:.3f}" for v, m in measured.items())
        print(f"round {round_ + 1}/{rounds}: CPU s {cpu}", flush=True)
    messages = per_round[0]["off"]["messages"]
    for measured in per_round:  # each variant ran the package it was meant to
        for variant, m in measured.items():
            assert m["from"] == (baseline if variant == "baseline" else str(REPO)), m["from"]
    assert all(m["messages"] == messages for r in per_round for m in r.values())
    result: dict[str, Any] = {
        "rounds": rounds,
        "messages": messages,
        "cpu_us_per_message": {
            v: statistics.median(r[v]["cpu"] for r in per_round) / messages * 1e6 for v in variants
        },
        "ratio_to_off": {
            v: statistics.median(r[v]["cpu"] / r["off"]["cpu"] for r in per_round) for v in variants
        },
        "scrapes_per_sync": statistics.median(
            r["observer + scrapes"]["scrapes"] for r in per_round
        ),
    }
    if instructions:
        result["instructions_per_message"] = _instructions(fake, variants, baseline, messages)
    return result


def _instructions(
    fake: Fake, variants: Sequence[str], baseline: str | None, messages: int
) -> dict[str, float]:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind on PATH")
    found = {}
    for variant in variants:
        path = baseline if variant == "baseline" else None
        full = _run_child(fake, variant, path, valgrind=True)["instructions"]
        dry = _run_child(fake, variant, path, dry=True, valgrind=True)["instructions"]
        found[variant] = (full - dry) / messages
    return found


def scrape_ms(businesses: int, repeat: int = 20) -> float:
    """Median milliseconds of one exposition of `businesses` x 7 methods, with their syncs."""
    from prometheus_client import CollectorRegistry, generate_latest

    from yamarket_chats import ChatsClient
    from yamarket_chats.limits import METHODS
    from yamarket_chats.metrics import ChatsCollector, SyncMetrics

    client = ChatsClient(api_key="bench", base_url="http://127.0.0.1:9")
    syncs = SyncMetrics(range(1, businesses + 1))
    for business in range(1, businesses + 1):
        for method in METHODS:
            client.stats._counters(business, method).calls += 1
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChatsCollector(client, syncs))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def report(result: Mapping[str, Any]) -> str:
    lines = ["| variant | CPU µs / message | ratio to off (paired) |", "|---|---:|---:|"]
    for variant, us in result["cpu_us_per_message"].items():
        lines.append(f"| {variant} | {us:.2f} | {result['ratio_to_off'][variant]:.3f}x |")
    for variant, count in result.get("instructions_per_message", {}).items():
        lines.append(f"| instructions per message: {variant} | {count:,.0f} | |")
    for businesses, ms in result["scrape_ms"].items():
        lines.append(f"| one scrape, {businesses} businesses x 7 methods | {ms:.1f} ms | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mode", choices=("keep-alive", "close"), default="close")
    parser.add_argument("--baseline-path", metavar="DIR", help="a checkout of the baseline")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the harness")
    parser.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "URL", "KEY"), help=argparse.SUPPRESS
    )
    parser.add_argument("--dry", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        variant, url, key = args.child
        print(json.dumps(asyncio.run(_child_sync(variant, url, key, args.dry))))
        return {}
    chats, messages = (2, 50) if args.quick else (10, 500)
    rounds = 1 if args.quick else args.rounds
    extra = ["--businesses", ",".join(map(str, BUSINESSES))]
    extra += ["--keep-alive"] if args.mode == "keep-alive" else []
    with fake_server(chats, messages, *extra) as fake:
        result = measure(fake, rounds, args.baseline_path, args.instructions)
    result["mode"] = args.mode
    result["scrape_ms"] = {n: scrape_ms(n, 3 if args.quick else 20) for n in (100, 1000)}
    print(f"mode {args.mode}, {result['messages']:,} messages x {rounds} rounds, medians:")
    print(report(result))
    return result


if __name__ == "__main__":
    main()
