"""The benchmark harness at a tiny size, so that it cannot rot unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

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
