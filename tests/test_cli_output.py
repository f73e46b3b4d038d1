"""What the CLI prints: user text never taken as markup, TSV that keeps its columns,
JSON Lines that stay valid whatever ends the run, a readable figure for waits."""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import pty
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSINESS
from tests.test_cli import assert_clean_failure, cli, keyed
from yamarket_chats import ChatsClient
from yamarket_chats.cli.waits import WaitClock
from yamarket_chats.hooks import CallInfo
from yamarket_chats.testing import FakeMarketConfig, FakeServer

MARKUP = "[/b] Цена [red]99[/red] :smile: [link=http://x]y[/link]"
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07")


def unescape_tsv(field: str) -> str:
    """The inverse of the CLI's TSV escaping (as documented in docs/cli.md)."""
    named = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        return named[code] if code in named else chr(int(code[1:], 16))

    return re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|[\\tnr])", one, field)


async def on_terminal(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run the CLI with its stdout on a pseudo-terminal, as a person at a terminal would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("YANDEX_MARKET_")}
    master, slave = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yamarket_chats.cli", *args,
        stdout=slave, stderr=asyncio.subprocess.PIPE,
        env={**base, "TERM": "xterm-256color", "COLUMNS": "250", "LINES": "50", **env},
    )  # fmt: skip
    os.close(slave)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        out, (_, err) = await asyncio.wait_for(
            asyncio.gather(asyncio.to_thread(read_all), process.communicate()), 60
        )
    finally:
        os.close(master)
    assert process.returncode is not None
    return process.returncode, ANSI.sub("", out.decode()), err.decode()


async def test_history_on_a_terminal_prints_user_text_literally(
    fake: FakeServer, tmp_path: Path
) -> None:
    chat = fake.market.chats(BUSINESS)[1]
    base = [str(BUSINESS), str(chat.chat_id), "--base-url", fake.url]
    code, _, err = await cli("send", *base, "-m", MARKUP, env=keyed(fake))
    assert code == 0, err
    invoice = tmp_path / "invoice.pdf"
    invoice.write_bytes(b"%PDF-1.4 fake")
    code, _, err = await cli("send", *base, "--file", str(invoice), env=keyed(fake))
    assert code == 0, err
    fake.market.add_message(BUSINESS, chat.chat_id, "evil \x1b[2J\x1b]0;pwned\x07 end")

    code, out, err = await on_terminal("history", *base, env=keyed(fake))
    assert code == 0, err
    assert "Traceback" not in err and err == ""
    assert "┃" in out or "│" in out  # a rich table, not TSV
    assert MARKUP in out
    assert "[invoice.pdf, 13 bytes]" in out
    assert "evil \\x1b[2J\\x1b]0;pwned\\x07 end" in out  # control characters shown, not obeyed


async def test_tsv_escapes_tabs_newlines_and_backslashes(fake: FakeServer) -> None:
    chat = fake.market.chats(BUSINESS)[2]
    texts = ["col\tumn", "two\nlines", "back\\slash\\t", "cr\rlf\r\n", "bell\x07 and \u2028 sep"]
    for text in texts:
        fake.market.add_message(BUSINESS, chat.chat_id, text)
    first = max(m.message_id for m in fake.market.messages(BUSINESS, chat.chat_id)) - 4
    args = ["history", str(BUSINESS), str(chat.chat_id), "--from", str(first)]
    code, out, err = await cli(*args, "--base-url", fake.url, env=keyed(fake))
    assert code == 0, err
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 1 + len(texts) + 1
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(row) == 4 for row in rows), rows
    assert [unescape_tsv(row[3]) for row in rows] == texts
    assert rows[0][3] == "col\\tumn" and rows[2][3] == "back\\\\slash\\\\t"


# Unicode's Bidi_Control characters: an override (U+202E) makes "exe.txt" read as "txt.exe".
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


async def test_bidirectional_controls_are_escaped_in_tsv_and_tables(fake: FakeServer) -> None:
    chat = fake.market.chats(BUSINESS)[3]
    text = "invoice\u202etxt.exe " + BIDI
    fake.market.add_message(BUSINESS, chat.chat_id, text)
    last = max(m.message_id for m in fake.market.messages(BUSINESS, chat.chat_id))
    args = ["history", str(BUSINESS), str(chat.chat_id), "--from", str(last)]
    code, out, err = await cli(*args, "--base-url", fake.url, env=keyed(fake))
    assert code == 0, err
    field = out.splitlines()[1].split("\t")[3]
    assert field.startswith("invoice\\u202etxt.exe \\u061c\\u200e")
    assert field.isascii() and unescape_tsv(field) == text
    code, out, err = await on_terminal(*args, "--base-url", fake.url, env=keyed(fake))
    assert code == 0, err
    assert "invoice\\u202etxt.exe" in out and not set(BIDI) & set(out)


@pytest.mark.parametrize(
    "fake",
    [FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=45, messages_per_chat=2)],
    indirect=True,
)
async def test_chats_json_lines_stay_valid_when_a_later_page_fails(fake: FakeServer) -> None:
    fake.faults.add("latency", times=1, operations={"get_chats"})  # the first page: normal
    fake.faults.add("status_500", operations={"get_chats"})  # every later one: 500
    args = ["chats", str(BUSINESS), "--json", "--max-retries", "0", "--base-url", fake.url]
    code, out, err = await cli(*args, env=keyed(fake))
    assert code == 1, err
    assert_clean_failure(err)
    chats = [json.loads(line) for line in out.splitlines()]
    assert [c["chatId"] for c in chats] == [c.chat_id for c in fake.market.chats(BUSINESS)][:20]
    assert out.endswith("}\n")


async def test_history_json_lines_stay_valid_when_a_later_page_fails(fake: FakeServer) -> None:
    chat = fake.market.chats(BUSINESS)[0]
    fake.faults.add("latency", times=1, operations={"get_chat_history"})
    fake.faults.add("status_500", operations={"get_chat_history"})
    args = ["history", str(BUSINESS), str(chat.chat_id), "--json", "--max-retries", "0"]
    code, out, err = await cli(*args, "--base-url", fake.url, env=keyed(fake))
    assert code == 1, err
    assert_clean_failure(err)
    assert len([json.loads(line) for line in out.splitlines()]) == 100


class _SlowLimiter:
    """Every acquire waits `delay` seconds: tasks that acquire together wait together."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.waited = 0.0

    async def start(self) -> None:
        pass

    async def acquire(self, business_id: int, method: str, deadline: float | None = None) -> Any:
        await asyncio.sleep(self.delay)
        self.waited += self.delay
        return None

    async def finish(self, lease: Any, status: int | None, headers: Any) -> float:
        return 0.0

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "fake", [FakeMarketConfig(businesses=(BUSINESS,), limits_enabled=False)], indirect=True
)
async def test_waits_are_measured_on_the_wall_clock_not_summed_over_tasks(
    make_client: Callable[..., ChatsClient],
) -> None:
    limiter, clock = _SlowLimiter(0.3), WaitClock()
    client = make_client(limiter=limiter, hooks=clock)
    started = time.monotonic()
    await asyncio.gather(*(client.get_chats(BUSINESS) for _ in range(8)))
    elapsed = time.monotonic() - started
    assert limiter.waited == pytest.approx(8 * 0.3)  # the sum over tasks: 2.4 s
    assert client.stats.waited_seconds == pytest.approx(8 * 0.3, rel=0.1)
    assert 0.3 <= clock.seconds <= elapsed + 0.01  # the clock: about 0.3 s
    await client.get_chats(BUSINESS)
    assert 0.6 <= clock.seconds <= time.monotonic() - started + 0.01


def _union(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of `intervals`, the plain way."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def test_the_wait_clock_keeps_the_union_when_a_wait_reaches_back() -> None:
    clock = WaitClock()
    clock.add(0.0, 1.0)
    clock.add(2.0, 3.0)
    clock.add(4.0, 4.5)
    assert clock.seconds == pytest.approx(2.5)
    clock.add(0.5, 5.0)  # a long wait that ended last covers the gaps and all three
    assert clock.seconds == pytest.approx(5.0)
    clock.add(5.0, 5.0)
    clock.add(6.0, 6.25)
    assert clock.seconds == pytest.approx(5.25)


async def test_the_wait_clock_is_exact_and_keeps_only_what_open_waits_can_reach() -> None:
    """Random calls in flight, each waiting from some moment after it began:
    the clock equals the union of all waits, and keeps few spells."""
    now = 0.0
    clock = WaitClock(now=lambda: now)
    rng = random.Random(17)
    live: dict[int, tuple[CallInfo, float]] = {}
    waits: list[tuple[float, float]] = []
    ends: list[float] = []
    most = 0
    for n in range(20000):
        now += rng.expovariate(10.0)
        choice = rng.random()
        if not live or (choice < 0.05 and len(live) < 8):
            call = CallInfo("get_chats", BUSINESS, None)
            await clock.on_start(call)
            live[n] = (call, now)
        elif choice < 0.1:
            call, _ = live.pop(rng.choice(list(live)))
            await clock.on_end(call)
        else:
            call, began = live[rng.choice(list(live))]
            # Mostly short waits (many spells), now and then one from the call's start.
            longest = now - began
            seconds = longest if rng.random() < 0.02 else min(longest, rng.expovariate(50.0))
            await clock.on_wait(call, "limits", seconds)
            waits.append((now - seconds, now))
            # Kept: the spells a wait still open could reach, and a few more.
            oldest = min(began for _, began in live.values())
            reachable = len(waits) - bisect.bisect_left(ends, oldest)
            ends.append(now)
            assert len(clock._spells) <= reachable + 17
            most = max(most, len(clock._spells))
        if n % 997 == 0:
            assert clock.seconds == pytest.approx(_union(waits))
    assert clock.seconds == pytest.approx(_union(waits))
    assert len(waits) > 10000 and most < len(waits) / 20


def test_running_the_cli_twice_in_one_process_adds_one_log_handler() -> None:
    import logging

    from yamarket_chats.cli import run

    logger = logging.getLogger("yamarket_chats")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        for _ in range(3):  # refused before any request: a bad base URL
            assert run(["chats", "1001", "--api-key", "k", "--base-url", "ftp://example.com"]) == 2
        assert sum(type(h) is logging.StreamHandler for h in logger.handlers) == 1
    finally:  # the rest of the suite reads these records through propagation
        logger.handlers[:], logger.level, logger.propagate = saved


def test_a_secret_is_masked_as_a_whole_token_never_inside_a_word() -> None:
    """A short key used to blank parts of other words ("data1" became "dat***")."""
    from yamarket_chats.cli.output import one_line

    key = "a1"
    text = "key a1 in data1, a1b, xa1, ba1_, Api-Key:a1 and a1-x; (a1) 'a1'\n=a1"
    assert one_line(text, [key]) == (
        "key *** in data1, a1b, xa1, ba1_, Api-Key:*** and ***-x; (***) '***' =***"
    )
    assert one_line("a1", [key]) == "***" and one_line("a1a1", [key]) == "a1a1"
    cyrillic = "\u0434\u0430\u043d\u043do"  # letters of any script are word letters
    assert one_line(f"{cyrillic}a1 a1{cyrillic}", [key]) == f"{cyrillic}a1 a1{cyrillic}"
    # Several secrets; one inside another is masked whole; regex characters are literal.
    secrets = ["ACMA:a1", "a1", None, "", "y0_b.c+"]
    text = "ACMA:a1 a1 y0_b.c+ y0_bxc+ ACMA:a1b"
    assert one_line(text, secrets) == "*** *** *** y0_bxc+ ACMA:a1b"
    # A secret ending (or starting) with punctuation is masked whatever touches that end.
    assert one_line("token y0_abc- then y0_abc-def", ["y0_abc-"]) == "token *** then ***def"
    assert one_line("x-abc", ["-abc"]) == "x***"
