"""The sink benchmarks at a tiny size, so that they cannot rot unnoticed."""

from __future__ import annotations

from benchmarks import sink_load_state, sink_sqlite


def test_sqlite_benchmark_runs() -> None:
    ratios = sink_sqlite.main(["--chats", "2", "--messages", "300", "--rounds", "1"])
    assert set(ratios) == {"sink-only", "sync"} and all(r > 0 for r in ratios.values())


def test_load_state_benchmark_runs() -> None:
    seconds = sink_load_state.main(["--businesses", "20", "--chats", "5", "--rounds", "1"])
    assert set(seconds) == {"sqlite", "jsonl"} and all(s > 0 for s in seconds.values())
