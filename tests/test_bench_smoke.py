"""The benchmark harness at a tiny size, so that it cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import main


def test_quick_benchmark_runs_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    results = main(
        ["--quick", "--only", "yamarket_chats", "--only", "aiohttp_msgspec", "--out", str(out)]
    )
    variants = results["throughput"]["variants"]
    assert set(variants) == {"yamarket_chats", "aiohttp_msgspec"}
    assert all(v["messages"] == 4 * 300 for v in variants.values())
    assert results["memory"]["messages"] == 20_000
    assert results["limiter"]["quota"]["served"] > 0
    assert (out / "throughput.png").stat().st_size > 0
    assert "yamarket_chats" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["quick"] is True


def _entry(label: str, cpu: list[float], wall: list[float]) -> dict[str, object]:
    runs = [{"messages": 1000, "cpu_s": c, "wall_s": w} for c, w in zip(cpu, wall, strict=True)]
    return {
        "label": label,
        "rate_median": 1000 / sorted(wall)[1],
        "rate_min": 1000 / max(wall),
        "rate_max": 1000 / min(wall),
        "cpu_per_100k_median": sorted(cpu)[1] * 100,
        "cpu_per_100k_min": min(cpu) * 100,
        "cpu_per_100k_max": max(cpu) * 100,
        "peak_rss_mb": 39.0,
        "messages": 1000,
        "pages": 10,
        "runs": runs,
        "instructions_per_message": None,
    }


def test_a_run_without_the_floor_still_compares_the_library_with_its_baseline() -> None:
    from benchmarks._report import _throughput_md

    data = {
        "mode": "keep-alive",
        "chats": 10,
        "messages_per_chat": 100,
        "rounds": 3,
        "concurrency": 4,
        "as_users": True,
        "baseline_ref": "abc1234",
        "load_average_1min": {"min": 1.0, "max": 1.5},
        "variants": {
            "yamarket_chats": _entry("yamarket_chats", [1.0, 1.1, 1.2], [2.0, 2.0, 2.0]),
            "yamarket_chats_baseline": _entry("baseline", [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),
        },
    }
    text = "\n".join(_throughput_md(data))
    assert "nan" not in text
    assert "| yamarket_chats | 500 [500-500] | - (-) | 110.00 [100.00-120.00] | - | 39 |" in text
    # Paired by round: CPU ratios 1.0, 1.1, 1.2 (median 1.1), the same wall time.
    assert "- vs the library at abc1234: 1.000x the messages/s, 1.100x the CPU per message" in text
    assert "(within 3%: rate met, CPU seconds **missed**)" in text


def test_read_path_times_the_limits_of_another_commit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import read_path

    root = Path(__file__).parent.parent
    if not (root / ".git").exists() and not os.environ.get("CI"):
        pytest.skip("not a git checkout")  # e.g. the suite run from an unpacked sdist
    monkeypatch.chdir(root)  # git finds the repository from here
    read_path.main(["--baseline", "HEAD", "--quick"])
    table = capsys.readouterr().out
    assert "yamarket_chats_baseline.limits" in sys.modules  # HEAD's, not the current ones again
    assert "| Limits acquire + finish (HEAD) | default limits + headers |" in table
    assert "| Limits acquire + finish (now) | limits off |" in table


def test_the_blocking_benchmark_compares_the_facade_with_the_async_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import blocking

    result = blocking.main(["--quick", "--threads", "2"])
    assert result["mode"] == "keep-alive" and result["asyncio_run_per_call_us"] > 0
    assert "asyncio.run + a new async client each call" in capsys.readouterr().out


def test_the_desk_queue_benchmark_runs(tmp_path: Path) -> None:
    from benchmarks.desk_queue import main as desk_queue

    results = desk_queue(["--chats", "300", "--messages", "3", "--rounds", "1",
                          "--out", str(tmp_path / "desk.md")])  # fmt: skip
    [sqlite] = results.values()
    assert 0 < sqlite["waiting"] < 300  # some wait (the count equals the plain read's)
    assert "Unused, the desk costs" in (tmp_path / "desk.md").read_text("utf-8")


def test_the_scaling_benchmark_runs(tmp_path: Path) -> None:
    from benchmarks.scaling import main as scaling

    results = scaling(["--sizes", "5,10", "--out", str(tmp_path)])
    for rows in results["modes"].values():
        assert [r["messages"] for r in rows] == [5 * 2 * 20, 10 * 2 * 20]
        assert all(0 <= r["gc_share"] < 1 and r["lag_p99_ms"] >= 0 for r in rows)
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert "CPU ms / 1k msg" in (tmp_path / "scaling.md").read_text("utf-8")
