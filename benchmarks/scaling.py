"""A plain sync of many businesses: how its cost grows with the number of cabinets.

    python -m benchmarks.scaling [--sizes 100,200,1000,2000,5000] [--redis] [--quick]

One fake Market in its own process (N businesses x 2 chats x 20 messages,
limits off, every connection closed as the API does). For each N, a child
process syncs the first N businesses into a sink that keeps nothing, with
the client's defaults (limits off, as on the fake), and measures itself:

- CPU seconds per 1,000 messages (``getrusage``, the sync alone) and wall;
- peak RSS of the child;
- event-loop lag: a ticker inside the process asks to wake every 10 ms and
  records how late it wakes; p99 and max over the run;
- GC share: the time inside the cyclic collector (``gc.callbacks``) over the
  sync's CPU time, and the full (generation 2) collections.

Each size runs with Python's own GC settings (the library never changes
them) and with those the CLI sets for its own process (``tune_gc``). With
``--redis`` each size runs again with the quotas in a Redis that the
benchmark starts (``RedisLimiter``, its default pool). ``--cli`` also runs
``yamarket-chats sync`` of 2,000 businesses with ``--redis-url`` (exit code
and messages stored) and interrupts a second one with SIGINT three seconds
in (exit code, and how long it took to exit). Writes
benchmarks/results/scaling.md, scaling.json and scaling.png.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._fake import REPO, fake_server
from benchmarks.metrics_cost import NullSink  # a sink that stores nothing

RESULTS = Path(__file__).parent / "results"
CHATS, MESSAGES = 2, 20
_TICK = 0.010


class GcClock:
    """Time spent in the cyclic collector, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        planned = loop.time() + _TICK
        await asyncio.sleep(_TICK)
        lags.append(max(loop.time() - planned, 0.0))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _child(
    url: str, key: str, businesses: int, redis_url: str | None, cli_gc: bool
) -> dict[str, Any]:
    from yamarket_chats import ChatsClient, sync
    from yamarket_chats.limits import METHODS

    if cli_gc:  # what `yamarket-chats` does for its own process after start-up
        from yamarket_chats.cli.app import tune_gc

        tune_gc()

    limiter = None
    if redis_url is not None:
        from yamarket_chats.redis_limits import RedisLimiter

        limiter = RedisLimiter(redis_url, limits=dict.fromkeys(METHODS), max_concurrency=None)
    options: dict[str, Any] = (
        {"limiter": limiter}
        if limiter
        else {"limits": dict.fromkeys(METHODS), "max_concurrency": None}
    )
    clock, lags, stop = GcClock(), [], asyncio.Event()
    async with ChatsClient(api_key=key, base_url=url, **options) as client:
        gc.collect()
        gc.callbacks.append(clock)
        ticker = asyncio.ensure_future(_ticker(lags, stop))
        cpu, wall = _cpu(), time.perf_counter()
        report = await sync(client, range(1, businesses + 1), NullSink())
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
        stop.set()
        await ticker
        gc.callbacks.remove(clock)
    if limiter is not None:
        await limiter.close()
    lags.sort()
    return {
        "businesses": businesses,
        "messages": report.messages,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_1k_messages": cpu / report.messages * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000 if lags else 0.0,
        "lag_max_ms": lags[-1] * 1000 if lags else 0.0,
        "gc_share": clock.seconds / cpu if cpu else 0.0,
        "gc_full": clock.full,
    }


def measure(
    url: str,
    key: str,
    businesses: int,
    redis_url: str | None,
    cli_gc: bool = False,
    repo: Path = REPO,
) -> dict[str, Any]:
    """One size in a fresh child process (its own RSS, GC and loop), with the package of
    ``repo`` (another commit's checkout, given this benchmark's module, for a baseline)."""
    command = [sys.executable, "-m", "benchmarks.scaling", "--child", url, key, str(businesses)]
    if redis_url:
        command += ["--child-redis", redis_url]
    if cli_gc:
        command += ["--child-cli-gc"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({businesses}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def cli_runs(url: str, key: str, redis_url: str, businesses: int) -> dict[str, Any]:
    """``yamarket-chats sync`` of many businesses through Redis: exit 0, all stored; and
    SIGINT three seconds into a second run: exit 130, and how fast."""
    ids = [str(b) for b in range(1, businesses + 1)]
    env = {**os.environ, "YANDEX_MARKET_API_KEY": key, "YANDEX_MARKET_BASE_URL": url}
    result: dict[str, Any] = {"businesses": businesses}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "chats.db"
        command = [sys.executable, "-m", "yamarket_chats", "sync", *ids, "--db", str(db),
                   "--redis-url", redis_url, "-q"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        result["exit"] = done.returncode
        result["wall_s"] = time.perf_counter() - started
        result["stderr"] = done.stderr[-500:]
        with sqlite3.connect(db) as conn:
            result["stored"] = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        result["expected"] = businesses * CHATS * MESSAGES
        db.unlink()
        proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        time.sleep(3.0)  # the measurement: three seconds into the run
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        result["sigint_exit"] = proc.wait(timeout=30)
        result["sigint_exit_s"] = time.perf_counter() - sent
    return result


def _table(rows: list[dict[str, Any]], title: str) -> list[str]:
    lines = [f"### {title}", "",
             "| businesses | messages | CPU ms / 1k msg | wall s | peak RSS MB | loop lag p99 ms"
             " | lag max ms | GC share | full GCs |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['businesses']:,} | {r['messages']:,} | {r['cpu_ms_per_1k_messages']:.0f}"
            f" | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['lag_p99_ms']:.1f}"
            f" | {r['lag_max_ms']:.0f} | {r['gc_share']:.1%} | {r['gc_full']} |"
        )
    return [*lines, ""]


def _ratio(rows: list[dict[str, Any]], big: int, small: int) -> str:
    by = {r["businesses"]: r["cpu_ms_per_1k_messages"] for r in rows}
    if big in by and small in by:
        return f"CPU per message at N={big:,} is {by[big] / by[small]:.2f}x that at N={small:,}."
    return ""


def report(results: dict[str, Any]) -> str:
    lines = [
        "# A plain sync of many businesses",
        "",
        "`python -m benchmarks.scaling` (one child process per size; fake in its own process,",
        f"{CHATS} chats x {MESSAGES} messages per business, limits off, connections closed).",
        "",
    ]
    for mode, rows in results["modes"].items():
        lines += _table(rows, mode)
        lines += [_ratio(rows, 2000, 200), ""]
    cli = results.get("cli")
    if cli:
        lines += [
            "### `yamarket-chats sync` with `--redis-url`",
            "",
            f"{cli['businesses']:,} businesses: exit {cli['exit']}, {cli['stored']:,} of"
            f" {cli['expected']:,} messages stored in {cli['wall_s']:.1f} s. SIGINT three"
            f" seconds into the same run: exit {cli['sigint_exit']} after"
            f" {cli['sigint_exit_s']:.2f} s.",
            "",
        ]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu, lag) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, rows in results["modes"].items():
        sizes = [r["businesses"] for r in rows]
        cpu.plot(sizes, [r["cpu_ms_per_1k_messages"] for r in rows], marker="o", label=mode)
        lag.plot(sizes, [r["lag_p99_ms"] for r in rows], marker="o", label=mode)
    cpu.set(xscale="log", xlabel="businesses", ylabel="CPU ms per 1,000 messages", ylim=(0, None))
    lag.set(xscale="log", yscale="log", xlabel="businesses", ylabel="event-loop lag p99, ms")
    lag.axhline(100, color="grey", linestyle=":")
    cpu.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _redis() -> Any:
    sys.path.insert(0, str(REPO))
    from tests.servers import RedisServer

    return RedisServer()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,200,1000,2000,5000")
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--cli", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, metavar=("URL", "KEY", "N"))
    parser.add_argument(
        "--baseline-path",
        type=Path,
        help="a checkout of another commit: each size runs with its package too (Python's GC"
        " settings); this module is copied into it",
    )
    parser.add_argument("--child-redis")
    parser.add_argument("--child-cli-gc", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        url, key, n = args.child
        result = _child(url, key, int(n), args.child_redis, args.child_cli_gc)
        print(json.dumps(asyncio.run(result)))
        return {}
    sizes = [int(s) for s in args.sizes.split(",")]
    ids = ",".join(str(b) for b in range(1, max(sizes) + 1))
    results: dict[str, Any] = {"modes": {}}
    with fake_server(CHATS, MESSAGES, "--businesses", ids) as fake:
        if args.baseline_path:
            base = args.baseline_path.resolve()
            (base / "benchmarks").mkdir(exist_ok=True)
            here = Path(__file__).parent
            for name in ("scaling.py", "_fake.py", "__init__.py"):
                (base / "benchmarks" / name).write_bytes((here / name).read_bytes())
            results["modes"]["baseline: the commit at --baseline-path"] = [
                measure(fake.url, fake.api_key, n, None, repo=base) for n in sizes
            ]
        results["modes"]["library (Python's GC settings)"] = [
            measure(fake.url, fake.api_key, n, None) for n in sizes
        ]
        results["modes"]["the CLI's GC settings (freeze, 50,000/20/10)"] = [
            measure(fake.url, fake.api_key, n, None, cli_gc=True) for n in sizes
        ]
        if args.redis or args.cli:
            redis = _redis()
            redis.start()
            try:
                if args.redis:
                    results["modes"]["Redis limiter (Python's GC settings)"] = [
                        measure(fake.url, fake.api_key, n, redis.url) for n in sizes
                    ]
                if args.cli:
                    results["cli"] = cli_runs(fake.url, fake.api_key, redis.url, 2000)
            finally:
                redis.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (args.out / "scaling.md").write_text(report(results), encoding="utf-8")
    chart(results, args.out / "scaling.png")
    print(report(results))
    return results


if __name__ == "__main__":
    main()
