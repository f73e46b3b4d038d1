"""``python -m benchmarks``: read every chat's history many ways; memory; limiter.

Starts the fake Market API in a separate process on loopback (limits off,
no added latency), then for each round runs every variant in its own client
process, in an order rotated each round. It does so for each connection mode
(``--mode``): ``close`` (the server closes every connection, like the real
API), ``keep-alive`` and ``tls`` (keep-alive over HTTPS with a throwaway CA).
Writes ``results.md``, ``results.json`` and ``throughput.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._fake import fake_server, generate_client
from ._report import write_report
from ._serve import MODES, serve
from .variants import LABELS, VARIANTS

FLOOR = "aiohttp_msgspec"
#: Where each connection mode's results go in results.json.
RESULT_KEYS = {
    "close": "throughput",
    "keep-alive": "throughput_keep_alive",
    "tls": "throughput_tls",
}


def export_baseline(ref: str, folder: Path) -> Path:
    """The ``yamarket_chats`` package as it was at git `ref`, unpacked into `folder`."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", ref, "yamarket_chats"],
        capture_output=True,
        check=True,
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _child(
    mode: str, fake: Any, expect: int, *, wrap: tuple[str, ...] = (), **options: Any
) -> dict[str, Any]:
    command = [*wrap, sys.executable, "-m", "benchmarks._child", mode, "--url", fake.url]
    command += ["--key", fake.api_key, "--business", str(fake.business_id)]
    command += ["--expect", str(expect)]
    for name, value in options.items():
        if value is True:
            command.append(f"--{name.replace('_', '-')}")
        elif value is not None and value is not False:
            command += [f"--{name}", str(value)]
    env = getattr(fake, "env", None)
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if wrap:
        result["stderr"] = done.stderr
    return result


_CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


def _instructions(fake: Any, expect: int, **options: Any) -> float:
    """Instructions the client process runs per message (callgrind: the same count every run).

    The whole process is counted, then the same process that only imports and
    sets up (``--dry``) is subtracted: what is left is the read.
    """
    counts = []
    for dry in (True, False):
        run = _child("throughput", fake, expect, wrap=_CALLGRIND, dry=dry, **options)
        found = re.search(r"Collected : (\d+)", run["stderr"])
        if found is None:
            raise RuntimeError(f"no instruction count from valgrind:\n{run['stderr'][-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / expect


def throughput(args: argparse.Namespace, variants: list[str], mode: str) -> dict[str, Any]:
    expect = args.chats * args.messages
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    counted: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-openapi-") as folder:
        generated: Path | None = None
        baseline: Path | None = None
        generator_log = ""
        if "generated" in variants:
            generated, generator_log = generate_client(Path(folder))
            print(f"generated the OpenAPI client in {generated}", flush=True)
        if "yamarket_chats_baseline" in variants:
            baseline = export_baseline(args.baseline, Path(folder) / "baseline")
        print(f"throughput, mode {mode}", flush=True)
        with serve(mode, args.chats, args.messages, limits=args.as_users) as fake:
            # One unrecorded read first: the fake generates each page once and
            # then serves it from its cache, so no variant pays that alone
            # (a --quick run checks the harness, not the figures: no warm-up).
            if not args.quick:
                _child("throughput", fake, expect, variant=FLOOR, concurrency=args.concurrency)
            load = [os.getloadavg()[0]]
            for round_ in range(args.rounds):
                shift = round_ % len(variants)
                order = variants[shift:] + variants[:shift]
                for variant in order:
                    run = _child(
                        "throughput",
                        fake,
                        expect,
                        variant=variant,
                        concurrency=args.concurrency,
                        generated=generated if variant == "generated" else None,
                        baseline=baseline if variant == "yamarket_chats_baseline" else None,
                        as_users=args.as_users,
                    )
                    runs[variant].append(run)
                    load.append(os.getloadavg()[0])
                    rate = run["messages"] / run["wall_s"]
                    print(
                        f"{mode} round {round_ + 1}/{args.rounds} {variant:24} {rate:9,.0f} msg/s "
                        f"cpu {run['cpu_s']:.2f}s rss {run['peak_rss_mb']:.0f} MB",
                        flush=True,
                    )
            if args.instructions:
                for variant in variants:
                    options = dict(variant=variant, concurrency=args.concurrency)
                    options["as_users"] = args.as_users
                    options["generated"] = generated if variant == "generated" else None
                    if variant == "yamarket_chats_baseline":
                        options["baseline"] = baseline
                    counted[variant] = _instructions(fake, expect, **options)
                    print(f"{mode} {variant:24} {counted[variant]:,.0f} instructions/message")
    sums = {run["id_sum"] for results in runs.values() for run in results}
    if len(sums) != 1:
        raise RuntimeError(f"variants read different messages (id sums {sums})")
    summary: dict[str, Any] = {}
    for variant, results in runs.items():
        rates = [r["messages"] / r["wall_s"] for r in results]
        cpu = [r["cpu_s"] / r["messages"] * 100_000 for r in results]
        summary[variant] = {
            "label": LABELS[variant],
            "rounds": len(results),
            "messages": results[0]["messages"],
            "pages": results[0]["pages"],
            "rate_median": statistics.median(rates),
            "rate_min": min(rates),
            "rate_max": max(rates),
            "cpu_per_100k_median": statistics.median(cpu),
            "cpu_per_100k_min": min(cpu),
            "cpu_per_100k_max": max(cpu),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "rss_before_mb": statistics.median(r["rss_before_mb"] for r in results),
            "runs": results,
            "instructions_per_message": counted.get(variant),
        }
    if FLOOR in summary:
        floor = summary[FLOOR]
        for entry in summary.values():
            entry["rate_vs_floor"] = entry["rate_median"] / floor["rate_median"]
            entry["cpu_vs_floor"] = entry["cpu_per_100k_median"] / floor["cpu_per_100k_median"]
            # Paired by round (same machine load, give or take): less noisy.
            pairs = zip(entry["runs"], floor["runs"], strict=True)
            entry["rate_vs_floor_paired"] = statistics.median(
                f["wall_s"] / r["wall_s"] for r, f in pairs
            )
            entry["rate_best"] = entry["rate_max"]
            entry["rate_best_vs_floor"] = entry["rate_max"] / floor["rate_max"]
    return {
        "mode": mode,
        "baseline_ref": args.baseline if baseline is not None else None,
        "chats": args.chats,
        "messages_per_chat": args.messages,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "as_users": args.as_users,
        "generator_log": generator_log,
        "load_average_1min": {"min": min(load), "max": max(load)},
        "variants": summary,
    }


def memory(args: argparse.Namespace) -> dict[str, Any]:
    with fake_server(1, args.memory_messages) as fake:
        print(f"memory run: 1 chat x {args.memory_messages:,} messages", flush=True)
        result = _child("memory", fake, args.memory_messages)
    result["growth_mb"] = result["peak_rss_end_mb"] - result["peak_rss_at_checkpoint_mb"]
    print(
        f"  RSS after {result['checkpoint']:,} messages {result['peak_rss_at_checkpoint_mb']:.1f}"
        f" MB, peak at the end {result['peak_rss_end_mb']:.1f} MB",
        flush=True,
    )
    return result


def limiter(args: argparse.Namespace) -> dict[str, Any]:
    from . import _limiter

    print(
        f"limiter run: {args.businesses:,} businesses; quota {args.quota}/"
        f"{args.quota_window:g}s for {args.windows} windows",
        flush=True,
    )
    result = _limiter.run(args.businesses, args.quota, args.quota_window, args.windows)
    quota = result["quota"]
    print(
        f"  {result['overhead']['on_again_us']:.1f} us/call; quota used {quota['share']:.1%},"
        f" 420s: {quota['refused_420_journal']}",
        flush=True,
    )
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--messages", type=int, default=2000, help="messages per chat")
    parser.add_argument("--concurrency", type=int, default=4, help="chats in flight")
    parser.add_argument(
        "--only", action="append", choices=VARIANTS, help="run only this variant (repeatable)"
    )
    parser.add_argument("--memory-messages", type=int, default=1_000_000)
    parser.add_argument("--businesses", type=int, default=10_000, help="limiter overhead run")
    parser.add_argument("--quota", type=int, default=50, help="get_chat_history per window")
    parser.add_argument("--quota-window", type=float, default=2.0, help="seconds")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument(
        "--mode",
        action="append",
        choices=MODES,
        help="connection mode of the throughput run (repeatable; default: all three)",
    )
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="also run the library as it was at this commit (variant yamarket_chats_baseline)",
    )
    parser.add_argument("--skip", action="append", choices=("throughput", "memory", "limiter"))
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each variant's instructions per message under valgrind (callgrind): "
        "a CPU cost that does not move with the machine's load (slow: ~1 min per variant)",
    )
    parser.add_argument(
        "--as-users",
        action="store_true",
        help="the library as users run it: client buckets and slots at work (quotas too high to "
        "throttle), the fake's quotas and parallel cap on, its rate-limit headers on every answer",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small run (seconds) to check the harness"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.chats, args.messages = 1, 4, 300
        args.memory_messages, args.businesses = 20_000, 100
        args.quota, args.quota_window, args.windows = 20, 0.5, 2
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    skip = set(args.skip or ())
    variants = list(args.only) if args.only else list(VARIANTS)
    if args.baseline is None:
        if "yamarket_chats_baseline" in variants and args.only:
            raise SystemExit("the yamarket_chats_baseline variant needs --baseline GIT_REF")
        variants = [v for v in variants if v != "yamarket_chats_baseline"]
    started = time.time()
    results: dict[str, Any] = {"quick": args.quick}
    if "throughput" not in skip:
        for mode in args.mode or MODES:
            results[RESULT_KEYS[mode]] = throughput(args, variants, mode)
    if "memory" not in skip:
        results["memory"] = memory(args)
    if "limiter" not in skip:
        results["limiter"] = limiter(args)
    results["seconds"] = time.time() - started
    write_report(results, args.out)
    print(f"results in {args.out}", flush=True)
    return results


if __name__ == "__main__":
    main()
