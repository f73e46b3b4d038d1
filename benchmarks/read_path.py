"""Small costs on the read path, each measured in process (issue 11, point 3).

``python -m benchmarks.read_path [--baseline GIT_REF]`` prints a Markdown table:

- item iteration: what ``async for message in client.iter_chat_history(...)``
  pays per message for its async generator, against the alternatives (an
  iterator class whose ``__anext__`` is a coroutine, or returns a ready
  awaitable), and against ``.pages()`` with a plain ``for`` per page;
- page tokens: ``urllib.parse.quote`` against the client's ``_quote_token``;
- limiter bookkeeping: ``Limits.acquire`` + ``finish`` per request (limits off
  and default limits with the API's rate-limit headers), now and, with
  ``--baseline``, at another commit.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

PAGES = [list(range(100)) for _ in range(1000)]
TOKEN = "WzEwMDAwMDAxLDEwMDAwMDEwMCwwXQ=="  # a token of the fake: base64 with padding


async def _pages() -> AsyncIterator[list[int]]:
    for page in PAGES:
        yield page


async def _generator() -> AsyncIterator[int]:
    async for page in _pages():
        for item in page:
            yield item


class _Coroutine:
    def __init__(self) -> None:
        self._pages = _pages()
        self._batch: list[int] = []
        self._index = 0

    def __aiter__(self) -> _Coroutine:
        return self

    async def __anext__(self) -> int:
        if self._index < len(self._batch):
            self._index += 1
            return self._batch[self._index - 1]
        self._batch = await self._pages.__anext__()
        self._index = 1
        return self._batch[0]


async def _per_item(make: Callable[[], Any]) -> float:
    started = time.perf_counter()
    async for _ in make():
        pass
    return (time.perf_counter() - started) / (len(PAGES) * 100) * 1e9


async def _per_page() -> float:
    started = time.perf_counter()
    async for page in _pages():
        for _ in page:
            pass
    return (time.perf_counter() - started) / (len(PAGES) * 100) * 1e9


async def iteration() -> dict[str, float]:
    """Nanoseconds per item of each way to iterate, median of 5."""
    ways: dict[str, Callable[[], Any]] = {
        "async generator (the client's)": lambda: _per_item(_generator),
        "class with a coroutine __anext__": lambda: _per_item(_Coroutine),
        ".pages() and a plain for per page": _per_page,
    }
    medians: dict[str, float] = {}
    for name, run in ways.items():  # (an `await` in a nested comprehension needs 3.11)
        medians[name] = statistics.median([await run() for _ in range(5)])
    return medians


def tokens(n: int = 100_000) -> dict[str, float]:
    """Nanoseconds per page token, ``quote`` against the client's shortcut."""
    from yamarket_chats.client import _quote_token

    assert _quote_token(TOKEN) == quote(TOKEN, safe="")
    return {
        "quote(token, safe='')": timeit.timeit(lambda: quote(TOKEN, safe=""), number=n) / n * 1e9,
        "_quote_token(token)": timeit.timeit(lambda: _quote_token(TOKEN), number=n) / n * 1e9,
    }


def _limits_at(ref: str, folder: Path) -> ModuleType:
    """The limits of the library at `ref`, loaded beside the current ones.

    The whole package is exported and imported under another name, so the
    limits work whatever their shape at that commit (one module, or a
    package with relative imports).
    """
    archive = subprocess.run(
        ["git", "archive", ref, "yamarket_chats"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    name = "yamarket_chats_baseline"
    (folder / "yamarket_chats").rename(folder / name)
    for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[loaded]  # another commit's, from an earlier call
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(f"{name}.limits")
    finally:
        sys.path.remove(str(folder))  # its submodules come through the package's __path__


async def limiter(
    modules: dict[str, ModuleType], businesses: int = 2000, rounds: int = 10
) -> dict[tuple[str, str], float]:
    """Microseconds per acquire + finish, limits off and with default limits.

    Every version is timed in turn, ``rounds - 1`` times, on the same business
    ids: the median of each is taken from runs interleaved in time, so the
    machine's load swings alike for all.
    """
    from benchmarks import _limiter

    ids = range(1, businesses + 1)
    headers = _limiter._answer_headers()
    cases = {}
    for label, module in modules.items():
        cases[label, "limits off"] = (module.Limits(dict.fromkeys(module.METHODS), None), None)
        cases[label, "default limits + headers"] = (
            module.Limits(module.DEFAULT_LIMITS, 4),
            headers,
        )
    times: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    for round_ in range(rounds):
        for key, (limits, answer) in cases.items():
            spent = await _limiter._cycle(limits, ids, _limiter.OVERHEAD_METHODS, answer)
            if round_:  # the first round creates the buckets
                times[key].append(spent / (len(ids) * 3) * 1e6)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.read_path", description=__doc__)
    parser.add_argument("--baseline", metavar="GIT_REF", help="also time Limits at this commit")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run to check the harness, not to measure"
    )
    args = parser.parse_args(argv)
    import yamarket_chats.limits as current

    lines = ["| what | way | cost |", "|---|---|---:|"]
    pages = PAGES[:]
    if args.quick:
        del PAGES[20:]  # _pages() iterates the module's list
    try:
        iterated = asyncio.run(iteration())
    finally:
        PAGES[:] = pages
    for name, ns in iterated.items():
        lines.append(f"| iterating messages | {name} | {ns:.0f} ns / message |")
    for name, ns in tokens(1000 if args.quick else 100_000).items():
        lines.append(f"| a page token | `{name}` | {ns:.0f} ns |")
    runs = {"now": current}
    with tempfile.TemporaryDirectory() as folder:
        if args.baseline:
            runs[args.baseline] = _limits_at(args.baseline, Path(folder))
        size = {"businesses": 100, "rounds": 2} if args.quick else {}
        timed = asyncio.run(limiter(runs, **size))
        for (label, name), us in sorted(timed.items(), key=lambda i: i[0][1]):
            lines.append(f"| Limits acquire + finish ({label}) | {name} | {us:.2f} µs |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
