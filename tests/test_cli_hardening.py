"""Hostile input and signals: one line on stderr, never a traceback, the right exit code."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BUSINESS
from tests.test_cli import assert_clean_failure, cli, keyed
from yamarket_chats import cli as cli_module
from yamarket_chats.testing import FakeMarketConfig, FakeServer


async def test_key_with_control_characters_is_refused_without_showing_it(
    fake: FakeServer,
) -> None:
    bad = fake.api_key + "\r\nX-Injected: 1"
    args = ["chats", str(BUSINESS), "--base-url", fake.url]
    for env, extra in [({"YANDEX_MARKET_API_KEY": bad}, []), ({}, ["--api-key", bad])]:
        code, out, err = await cli(*args, *extra, env=env)
        assert code == 2, err
        assert_clean_failure(err)
        assert "control characters" in err and "X-Injected" not in out + err
    assert len(fake.journal) == 0


@pytest.fixture
def keep_process_state() -> Iterator[None]:
    """`run` installs signal handlers and sets up the library's logger: undo both."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    logger = logging.getLogger("yamarket_chats")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate


def test_key_with_nul_is_refused(
    capsys: pytest.CaptureFixture[str], keep_process_state: None
) -> None:
    # argv and the environment cannot carry NUL; a caller of run() can.
    code = cli_module.run(["chats", "1", "--api-key", "ACMA:a\0b", "--base-url", "http://x"])
    err = capsys.readouterr().err
    assert code == 2 and "control characters" in err and "\0" not in err
    assert_clean_failure(err)


async def test_message_with_an_undecodable_byte_is_refused(fake: FakeServer) -> None:
    chat = fake.market.chats(BUSINESS)[0]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yamarket_chats.cli", "send", str(BUSINESS), str(chat.chat_id),
        "--base-url", fake.url, "-m", b"\xd0\x9f\xff",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **keyed(fake)},
    )  # fmt: skip
    _, raw = await asyncio.wait_for(process.communicate(), 30)
    err = raw.decode()
    assert process.returncode == 2, err
    assert_clean_failure(err)
    assert "--message is not valid UTF-8 (byte 0xff" in err
    assert len(fake.journal) == 0


@pytest.mark.parametrize("url", ["http://[::1", "ftp://example.com", "http://host:99999", "nope"])
async def test_bad_base_url_is_refused(url: str) -> None:
    code, _, err = await cli("chats", "1", "--base-url", url, env={"YANDEX_MARKET_API_KEY": "k"})
    assert code == 2, err
    assert_clean_failure(err)
    assert "--base-url" in err


async def test_a_jsonl_sink_that_cannot_be_used_fails_in_one_line(
    fake: FakeServer, tmp_path: Path
) -> None:
    base = ["sync", str(BUSINESS), "--base-url", fake.url, "-q"]
    code, _, err = await cli(*base, "--jsonl", str(tmp_path), env=keyed(fake))
    assert code == 1, err
    assert_clean_failure(err)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b'\x00\xff not json\n{"kind": "message"}\n')
    code, _, err = await cli(*base, "--jsonl", str(garbage), env=keyed(fake))
    assert "Traceback" not in err
    if code != 0:  # refused, or repaired and said where the bad lines went
        assert_clean_failure(err)


@pytest.mark.parametrize("target", ["--jsonl", "--db"])
async def test_second_sync_on_one_sink_exits_6(
    fake: FakeServer, tmp_path: Path, target: str
) -> None:
    path = tmp_path / "chats.out"
    args = ["sync", str(BUSINESS), target, str(path), "--base-url", fake.url, "-q"]
    fake.faults.add("latency", delay=5, operations={"get_chat_history"})  # the first holds on
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yamarket_chats.cli", *args,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **keyed(fake)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not fake.journal.entries("get_chat_history"):
            assert time.monotonic() < deadline, "the first sync never got going"
            await asyncio.sleep(0.01)
        code, _, err = await cli(*args, env=keyed(fake))
        assert code == 6, err
        assert_clean_failure(err)
        assert "in use by another sync" in err and str(path) in err
    finally:
        first.send_signal(signal.SIGINT)
        _, first_err = await asyncio.wait_for(first.communicate(), 60)
    assert first.returncode == 130, first_err.decode()


async def test_a_sink_locked_by_another_process_exits_6(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    with path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        args = ["sync", str(BUSINESS), "--jsonl", str(path), "--base-url", fake.url]
        code, _, err = await cli(*args, env=keyed(fake))
    assert code == 6, err
    assert_clean_failure(err)
    assert "--lock-timeout" in err and len(fake.journal) == 0  # refused before any request


async def test_lock_timeout_waits_for_the_other_sync(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    args = ["sync", str(BUSINESS), "--jsonl", str(path), "--base-url", fake.url, "-q"]
    with path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = await cli(*args, "--lock-timeout", "0.3", env=keyed(fake))
        assert code == 6 and "waited 0.3 s" in err, err
        waiting = asyncio.ensure_future(cli(*args, "--lock-timeout", "30", env=keyed(fake)))
        await asyncio.sleep(1.0)
        assert not waiting.done()
    code, _, err = await waiting  # the lock went with the file
    assert code == 0, err
    assert path.read_text().count('"kind":"message"') == 5 * 230


def _script() -> str:
    """The installed ``yamarket-chats`` console script of this interpreter."""
    found = shutil.which("yamarket-chats", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("the yamarket-chats console script is not installed next to python")
    return found


def _catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux: SigCgt in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask.split()[1], 16) >> (sig - 1) & 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_in_the_first_half_second_exits_cleanly(
    fake: FakeServer, sig: signal.Signals
) -> None:
    """From the moment the command has a handler (before importing anything heavy)
    on, through the imports and into the run, a signal gives 128 + its number."""
    fake.faults.add("latency", delay=5, operations={"get_chats"})  # keep it running
    script = _script()
    env = {**os.environ, **keyed(fake)}
    for delay in (0.0, 0.0, 0.05, 0.1, 0.2, 0.35, 0.5):
        process = await asyncio.create_subprocess_exec(
            script, "chats", str(BUSINESS), "--base-url", fake.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _catches(process.pid, signal.SIGTERM):
            assert time.monotonic() < deadline and process.returncode is None
            await asyncio.sleep(0.001)
        await asyncio.sleep(delay)
        process.send_signal(sig)
        _, raw = await asyncio.wait_for(process.communicate(), 20)
        err = raw.decode()
        assert process.returncode == 128 + sig, (delay, process.returncode, err)
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == "yamarket-chats: interrupted", err


@pytest.mark.parametrize(
    "fake",
    [FakeMarketConfig(businesses=(BUSINESS,), quotas={"get_chats": 1}, quota_window=30)],
    indirect=True,
)
async def test_max_wait_gives_up_on_a_spent_quota_with_exit_5(fake: FakeServer) -> None:
    args = ["chats", str(BUSINESS), "--base-url", fake.url]
    code, _, err = await cli(*args, env=keyed(fake))  # spends the window's only request
    assert code == 0, err
    started = time.monotonic()
    code, _, err = await cli(*args, "--max-wait", "2", env=keyed(fake))
    assert code == 5, err
    assert_clean_failure(err)
    assert "rate limits still exhausted" in err and time.monotonic() - started < 15
