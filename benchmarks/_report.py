"""Markdown table, JSON and PNG chart of a benchmark run."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "yamarket-chats",
    "aiohttp",
    "msgspec",
    "httpx",
    "pydantic",
    "openapi-python-client",
    "attrs",
)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


MODE_TEXT = {
    "close": "`Connection: close` on every answer like the real API",
    "keep-alive": "connections kept alive (clients may reuse them)",
    "tls": "HTTPS with a throwaway CA, connections kept alive",
}
# (rate >= x floor, CPU <= x floor) per mode, from issue 11.
TARGETS = {"close": (0.9, 1.1), "keep-alive": (0.9, 1.15), "tls": (0.9, 1.15)}


def _throughput_md(data: dict[str, Any]) -> list[str]:
    variants = data["variants"]
    mode = data.get("mode", "close")
    limits = (
        "quotas and the parallel cap of 4 on (one-second windows: never throttling), its"
        " X-RateLimit-Resource-* headers on every answer; the library with a bucket on every"
        " method (10^9 an hour: asked and charged, never waiting) and 4 slots"
        if data.get("as_users")
        else "limits off"
    )
    lines = [
        f"## Reading {data['chats']} chats x {data['messages_per_chat']:,} messages, mode `{mode}`",
        "",
        f"{data['rounds']} round(s), variants in rotated order each round, each variant in its"
        f" own client process; {data['concurrency']} chats in flight at a time for every variant;"
        " pages of 100 messages (20 chats for the list). Fake server in a separate process on"
        f" loopback, {limits}, no added latency, {MODE_TEXT[mode]}."
        " messages/s: median [min-max] over rounds; CPU: client process user+sys seconds per"
        " 100k messages, around the read only; RSS: peak of the client process.",
        "",
        '"vs floor" for messages/s is the median over rounds of the ratio within each round'
        ' (paired, so slow swings of the machine\'s load cancel out); "best" is the fastest'
        " round of each variant over the floor's fastest.",
        "",
        "| variant | messages/s median [min-max] | vs floor (best) | client CPU s / 100k msg "
        "[min-max] | vs floor | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for entry in variants.values():
        lines.append(
            f"| {entry['label']} | {entry['rate_median']:,.0f} [{entry['rate_min']:,.0f}-"
            f"{entry['rate_max']:,.0f}] | {_times(entry, 'rate_vs_floor_paired')} "
            f"({_times(entry, 'rate_best_vs_floor')}) | "
            f"{entry['cpu_per_100k_median']:.2f} [{entry['cpu_per_100k_min']:.2f}-"
            f"{entry['cpu_per_100k_max']:.2f}] | {_times(entry, 'cpu_vs_floor')} | "
            f"{entry['peak_rss_mb']:.0f} |"
        )
    counted = [e for e in variants.values() if e.get("instructions_per_message")]
    if counted:
        lines += [
            "",
            "Instructions per message of the client process (valgrind callgrind, one run each,"
            " its set-up subtracted; the same count whatever the machine's load): "
            + ", ".join(f"{e['label']} {e['instructions_per_message']:,.0f}" for e in counted)
            + ".",
        ]
    first = next(iter(variants.values()))
    load = data["load_average_1min"]
    lines += [
        "",
        f"Every variant read {first['messages']:,} messages in {first['pages']:,} requests"
        " (asserted, with the same sum of message ids).",
        f"1-minute load average during the rounds: {load['min']:.2f} to {load['max']:.2f}"
        f" on {os.cpu_count()} cores (the fake and one client take about 2; anything above"
        " means other processes shared the machine and wall-clock numbers are noisier).",
    ]
    lib = variants.get("yamarket_chats")
    if lib:
        lines += ["", "Targets:", "", *_targets(lib, variants, mode, data.get("baseline_ref"))]
    return lines


def _times(entry: dict[str, Any], key: str) -> str:
    """A ratio of the table, or a dash when the run had no floor to compare with."""
    value = entry.get(key)
    return "-" if value is None else f"{value:.2f}x"


def _targets(
    lib: dict[str, Any], variants: dict[str, Any], mode: str, baseline_ref: str | None
) -> list[str]:
    """The library against the floor, its baseline and the alternatives that ran."""
    lines: list[str] = []
    floor = variants.get("aiohttp_msgspec")
    if floor:
        rate_target, cpu_target = TARGETS[mode]
        lines.append(
            f"- messages/s >= {rate_target}x the msgspec floor: {lib['rate_vs_floor_paired']:.2f}x"
            f" paired median ({lib['rate_vs_floor']:.2f}x of medians,"
            f" {lib['rate_best_vs_floor']:.2f}x best rounds) -- "
            f"{_mark(lib['rate_vs_floor_paired'] >= rate_target)}"
        )
        lines.append(
            f"- client CPU per message <= {cpu_target}x the floor: {lib['cpu_vs_floor']:.2f}x -- "
            f"{_mark(lib['cpu_vs_floor'] <= cpu_target)}"
        )
    for other, what in (
        ("yamarket_chats_baseline", f"the library at {baseline_ref}"),
        ("yamarket_chats_hooks", "the library with no-op hooks on every event"),
    ):
        if other in variants:
            lines.append(f"- vs {what}: {_versus(lib, variants[other])}")
    for other in ("aiohttp_json", "httpx_pydantic", "generated"):
        if other in variants:
            o = variants[other]
            speed = lib["rate_median"] / o["rate_median"]
            cpu = o["cpu_per_100k_median"] / lib["cpu_per_100k_median"]
            lines.append(
                f"- faster than {o['label']}: {speed:.2f}x the messages/s, "
                f"{cpu:.2f}x less CPU per message -- {_mark(speed > 1.0)}"
            )
    return lines


def _versus(lib: dict[str, Any], other: dict[str, Any]) -> str:
    """The library against another build of itself: paired by round, and by instructions."""
    pairs = list(zip(lib["runs"], other["runs"], strict=True))
    rate = statistics.median(o["wall_s"] / r["wall_s"] for r, o in pairs)
    cpu = statistics.median(
        (r["cpu_s"] / r["messages"]) / (o["cpu_s"] / o["messages"]) for r, o in pairs
    )
    text = (
        f"{rate:.3f}x the messages/s, {cpu:.3f}x the CPU per message (medians of the"
        f" {len(pairs)} per-round ratios; of the medians:"
        f" {lib['rate_median'] / other['rate_median']:.3f}x and"
        f" {lib['cpu_per_100k_median'] / other['cpu_per_100k_median']:.3f}x)"
    )
    counted = lib.get("instructions_per_message"), other.get("instructions_per_message")
    if counted[0] and counted[1]:
        instructions = counted[0] / counted[1]
        text += f", {instructions:.3f}x the instructions per message"
        return (
            f"{text} (within 3%: rate {_mark(rate >= 0.97)}, CPU seconds"
            f" {_mark(cpu <= 1.03)}, instructions {_mark(instructions <= 1.03)})"
        )
    return f"{text} (within 3%: rate {_mark(rate >= 0.97)}, CPU seconds {_mark(cpu <= 1.03)})"


def _memory_md(data: dict[str, Any]) -> list[str]:
    return [
        f"## Memory: one chat of {data['messages']:,} messages through `iter_chat_history`",
        "",
        "| | value |",
        "|---|---:|",
        f"| requests | {data['requests']:,} |",
        f"| wall time | {data['wall_s']:.1f} s ({data['messages'] / data['wall_s']:,.0f} msg/s) |",
        f"| client CPU | {data['cpu_s']:.1f} s |",
        f"| RSS before the walk | {data['rss_start_mb']:.1f} MB |",
        f"| peak RSS after {data['checkpoint']:,} messages | "
        f"{data['peak_rss_at_checkpoint_mb']:.1f} MB |",
        f"| peak RSS at the end | {data['peak_rss_end_mb']:.1f} MB |",
        f"| growth | {data['growth_mb']:.1f} MB "
        f"(target < 30 MB: {_mark(data['growth_mb'] < 30)}) |",
    ]


def _redis_md(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return ["Shared quotas through Redis: not measured (no redis-server on this machine).", ""]
    return [
        f"Shared quotas through Redis (`RedisLimiter`, a local redis-server over loopback):"
        f" acquire + finish for {r['businesses']:,} business ids x 3 methods, µs per call:",
        "",
        "| backend | µs per request | vs local |",
        "|---|---:|---:|",
        f"| local buckets (`Limits`) | {r['local_us']:.1f} | 1.0x |",
        *(
            [
                f"| Redis, finish sent on its own (2 round trips, the former design) |"
                f" {r['redis_two_trips_us']:.1f} | {r['redis_two_trips_us'] / r['local_us']:.0f}x |"
            ]
            if "redis_two_trips_us" in r
            else []
        ),
        f"| Redis, finish carried by the next acquire (1 round trip) | {r['redis_us']:.1f} |"
        f" {r['redis_us'] / r['local_us']:.0f}x |",
        "",
        *(
            [
                f"One round trip costs {r['redis_vs_two_trips']:.2f}x of two (target <= 0.7x)."
                f" {r['waiters']['waiters']} coroutines waiting for a full parallel cap:"
                f" {r['waiters']['commands_per_s']:.0f} Redis commands/s (polling every 20 ms"
                " made ~28,000/s).",
                "",
            ]
            if "waiters" in r
            else []
        ),
    ]


def _limiter_md(data: dict[str, Any]) -> list[str]:
    o, q = data["overhead"], data["quota"]
    return [
        "## Limiter",
        "",
        f"Per-call cost of `Limits.acquire` + give-back for {o['businesses']:,} business ids x 3"
        f" methods ({o['calls']:,} calls), in µs per call:",
        "",
        "| | first call of each (business, method) | again |",
        "|---|---:|---:|",
        f"| awaited no-op (loop baseline) | {o['baseline_us']:.2f} | |",
        f"| limits off (no buckets, no slots) | {o['off_first_us']:.2f} | "
        f"{o['off_again_us']:.2f} |",
        f"| default limits (buckets, 4 slots, rate-limit headers read) | "
        f"{o['on_first_us']:.2f} | {o['on_again_us']:.2f} |",
        "",
        f"State held: {o['bytes_per_business']:,.0f} bytes per business id (3 methods).",
        "",
        *_redis_md(data.get("redis")),
        f"Quota use: fake in-process with a quota of {q['amount']} `get_chat_history` per"
        f" {q['window_s']:g} s window; client `RateLimit({q['amount']}, {q['window_s']:g})`,"
        f" 4 chats walked as fast as allowed for {q['windows']} windows.",
        "",
        "| | value |",
        "|---|---:|",
        f"| allowed | {q['allowed']} |",
        f"| served (200) | {q['served']} |",
        f"| share of the allowed rate used | {q['share']:.1%} (target >= 98%: "
        f"{_mark(q['share'] >= 0.98)}) |",
        f"| 420 answers (fake journal / client stats) | {q['refused_420_journal']} / "
        f"{q['rate_limited_client']} (target 0: "
        f"{_mark(q['refused_420_journal'] == 0 and q['rate_limited_client'] == 0)}) |",
    ]


def _chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(data["variants"].values())
    labels = [v["label"].replace(" (", "\n(") for v in variants]
    colors = ["#d62728" if v["label"].startswith("yamarket_chats") else "#7f7f7f" for v in variants]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    y = range(len(variants))
    rates = [v["rate_median"] / 1000 for v in variants]
    rate_err = [
        [v["rate_median"] / 1000 - v["rate_min"] / 1000 for v in variants],
        [v["rate_max"] / 1000 - v["rate_median"] / 1000 for v in variants],
    ]
    left.barh(y, rates, xerr=rate_err, color=colors, capsize=4)
    left.set_yticks(list(y), labels)
    left.invert_yaxis()
    left.set_xlabel("thousand messages / s (median, min-max) - higher is better")
    for i, rate in enumerate(rates):
        left.text(rate, i, f" {rate:.0f}k", va="bottom", fontsize=9)
    cpu = [v["cpu_per_100k_median"] for v in variants]
    cpu_err = [
        [v["cpu_per_100k_median"] - v["cpu_per_100k_min"] for v in variants],
        [v["cpu_per_100k_max"] - v["cpu_per_100k_median"] for v in variants],
    ]
    right.barh(y, cpu, xerr=cpu_err, color=colors, capsize=4)
    right.set_yticks(list(y), [""] * len(variants))
    right.invert_yaxis()
    right.set_xlabel("client CPU seconds per 100k messages - lower is better")
    for i, value in enumerate(cpu):
        right.text(value, i, f" {value:.2f}s", va="bottom", fontsize=9)
    fig.suptitle(
        f"Reading {data['chats']} chats x {data['messages_per_chat']:,} messages from a local fake,"
        f" mode {data.get('mode', 'close')} ({data['rounds']} rounds,"
        f" {data['concurrency']} chats in flight)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> None:
    """Write ``results.md``, ``results.json`` and a chart per throughput mode run."""
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    results["machine"] = info
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        "# yamarket_chats benchmarks",
        "",
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores, Python"
        f" {info['python']} ({info['platform']}); {versions}.",
        "Generated by `python -m benchmarks`" + (" --quick" if results.get("quick") else "") + ".",
        "",
    ]
    for key in ("throughput", "throughput_keep_alive", "throughput_tls"):
        if key in results:
            lines += [*_throughput_md(results[key]), "", f"![{key}]({key}.png)", ""]
            _chart(results[key], out / f"{key}.png")
    if "memory" in results:
        lines += [*_memory_md(results["memory"]), ""]
    if "limiter" in results:
        lines += [*_limiter_md(results["limiter"]), ""]
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
