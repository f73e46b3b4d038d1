"""Hostile input and signals: one line on stderr, never a traceback, the right exit code."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import shutil
import signal
import sqlite3
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
        assert "must be visible ASCII characters only" in err and "a line break" in err
        assert "X-Injected" not in out + err
        assert (env and "$YANDEX_MARKET_API_KEY" in err) or (extra and "--api-key" in err)
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
    assert code == 2 and "--api-key" in err and "a control character" in err and "\0" not in err
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


@pytest.mark.parametrize(
    "url",
    [
        "ftp://bob:S3cretPW@example.com",
        "http://bob:S3cretPW@example.com",
        "https://bob:S3cretPW@[::1",
        "http://bob:S3cretPW@example.com:99999",
        "http://bob:S3cretPW@exa mple.com",
        "http://bob:S3cretPW@example.com/?x=1",
        "bob:S3cretPW@example.com",
    ],
)
async def test_a_bad_base_url_never_shows_its_password(url: str) -> None:
    """The client's own check (`_validate.base_url`) refuses it; nothing echoes the URL."""
    code, out, err = await cli(
        "chats", "1001", "--base-url", url, env={"YANDEX_MARKET_API_KEY": "k"}
    )
    assert code == 2, err
    assert_clean_failure(err)
    assert err.startswith("yamarket-chats chats: error: --base-url ")
    assert "S3cretPW" not in out + err


async def test_a_jsonl_sink_that_cannot_be_used_fails_in_one_line(
    fake: FakeServer, tmp_path: Path
) -> None:
    base = ["sync", str(BUSINESS), "--base-url", fake.url, "-q"]
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b'\x00\xff not json\n{"kind": "message"}\n')
    code, _, err = await cli(*base, "--jsonl", str(garbage), env=keyed(fake))
    if code == 0:  # repaired: the damaged line moved aside, and said where
        assert f"{garbage} line 1 " in err and f"{garbage}.rejected" in err, err
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
    else:  # refused as not a sink's file: one line naming it
        assert code in (1, 2), err
        assert_clean_failure(err)
        assert str(garbage) in err


async def test_a_damaged_line_of_a_jsonl_sink_is_reported_with_where_it_went(
    fake: FakeServer, tmp_path: Path
) -> None:
    """Issue 14.4: the sink repairs the line; the CLI, quiet or not, says where it went."""
    path = tmp_path / "chats.jsonl"
    args = ["sync", str(BUSINESS), "--jsonl", str(path), "--base-url", fake.url, "-q"]
    code, _, err = await cli(*args, env=keyed(fake))
    assert code == 0 and err == "", err
    lines = path.read_bytes().count(b"\n")
    with path.open("ab") as f:
        f.write(b"junk \x1b[31m in the middle\n")
    code, out, err = await cli(*args, env=keyed(fake))
    assert code == 0, err
    assert out == "" and "Traceback" not in err
    [warning] = err.splitlines()
    assert warning.startswith(f"yamarket-chats: WARNING: {path} line {lines + 1} "), warning
    assert f"{path}.rejected" in warning and "\x1b" not in warning
    assert (tmp_path / "chats.jsonl.rejected").read_bytes() == b"junk \x1b[31m in the middle\n"
    code, _, err = await cli(*args, env=keyed(fake))  # repaired: nothing more to say
    assert code == 0 and err == "", err


@pytest.mark.parametrize("target", ["--jsonl", "--db"])
@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "missing directory"])
async def test_a_sink_path_that_is_not_a_file_fails_in_one_line(
    fake: FakeServer, tmp_path: Path, target: str, kind: str
) -> None:
    """Issue 14.4 and the sinks' odd-file errors: one line naming the path, exit 1 or 2,
    before any request, and never a wait (a FIFO with no writer)."""
    path = {
        "directory": tmp_path,
        "fifo": tmp_path / "fifo",
        "device": Path(os.devnull),
        "missing directory": tmp_path / "missing" / "chats.out",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)
    args = ["sync", str(BUSINESS), target, str(path), "--base-url", fake.url, "-q"]
    code, out, err = await cli(*args, env=keyed(fake))
    assert code in (1, 2), err
    assert_clean_failure(err)
    assert str(path) in err and out == ""
    assert len(fake.journal) == 0


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
        waiting = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "yamarket_chats.cli", *args, "--lock-timeout", "30",
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **keyed(fake)},
        )  # fmt: skip
        # The sign that it waits for the lock: its warning, before any request.
        assert waiting.stderr is not None
        line = (await asyncio.wait_for(waiting.stderr.readline(), 30)).decode()
        assert f"{path} is in use by another sync (pid {os.getpid()})" in line, line
        assert "waiting up to 30 s for its lock" in line
        assert waiting.returncode is None and len(fake.journal) == 0
    _, err_bytes = await asyncio.wait_for(waiting.communicate(), 30)  # the lock went with the file
    assert waiting.returncode == 0, err_bytes
    assert path.read_text().count('"kind":"message"') == 5 * 230


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_an_interrupt_while_the_database_is_busy_exits_at_once(
    fake: FakeServer, tmp_path: Path, sig: signal.Signals
) -> None:
    """Opening a SQLite file another program holds waits up to the busy timeout (30 s);
    the sink is opened off the event loop, so a signal ends that wait at once."""
    db = tmp_path / "chats.db"
    holder = sqlite3.connect(db, isolation_level=None)
    process = None
    try:
        holder.execute("CREATE TABLE other (x)")  # a rollback-journal database
        holder.execute("BEGIN EXCLUSIVE")  # no reader, no writer until it ends
        args = ["sync", str(BUSINESS), "--db", str(db), "--base-url", fake.url]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "yamarket_chats.cli", *args,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **keyed(fake)},
        )  # fmt: skip
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 20)  # it is waiting
        assert line.decode() == (
            f"yamarket-chats: waiting for {db}: another program may be using it (Ctrl-C stops)\n"
        )
        sent = time.monotonic()
        process.send_signal(sig)
        _, rest = await asyncio.wait_for(process.communicate(), 20)
        took = time.monotonic() - sent
    finally:
        if process is not None and process.returncode is None:  # a failed attempt
            process.kill()
            await process.wait()
        holder.close()
    err = rest.decode()
    assert process.returncode == 128 + sig, err
    assert err == "yamarket-chats: interrupted\n"
    assert took < 5, took  # not the 30 s the busy database would have held it
    assert len(fake.journal) == 0


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
    # An hour's window: the fake's windows are aligned to the wall clock, and a
    # boundary between the two runs (1 in 30 with 30 s windows) would free the quota.
    [FakeMarketConfig(businesses=(BUSINESS,), quotas={"get_chats": 1}, quota_window=3600)],
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


async def _spam_until_exit(
    process: asyncio.subprocess.Process, pidfd: int, sig: int
) -> tuple[int, str]:
    """Send `sig` every millisecond or two until `process` exits; its code and stderr.

    Through a pidfd (opened when the process started): never a reused pid, and
    unlike Popen.send_signal no waitpid that would reap the child behind asyncio's back.
    """
    done = asyncio.ensure_future(process.communicate())
    while not done.done():
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, sig)
        await asyncio.wait([done], timeout=0.0015)
    _, raw = await asyncio.wait_for(done, 30)
    assert process.returncode is not None
    return process.returncode, raw.decode()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux: /proc and pidfds")
async def test_repeated_signals_at_any_moment_never_kill_the_process(fake: FakeServer) -> None:
    """Signal after signal, from a random moment of a short run on, or once its output
    is complete (Python's shutdown puts the default handlers back): the command exits
    0, 130 or 143, never by the signal itself, and never with a traceback."""
    script, env = _script(), {**os.environ, **keyed(fake)}
    rng = random.Random(14)
    chats = len(fake.market.chats(BUSINESS))
    for attempt in range(8):  # each signal, each moment, twice
        sig = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        process = await asyncio.create_subprocess_exec(
            script, "chats", str(BUSINESS), "--json", "--base-url", fake.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        pidfd = os.pidfd_open(process.pid)
        try:
            assert process.stdout is not None
            if attempt % 4 < 2:  # from a random moment on
                deadline = time.monotonic() + 20
                while not _catches(process.pid, signal.SIGTERM):
                    assert time.monotonic() < deadline and process.returncode is None
                    await asyncio.sleep(0.001)
                await asyncio.sleep(rng.uniform(0, 0.5))
            else:  # once the output is complete: the run is over, the process is exiting
                for _ in range(chats):
                    assert await asyncio.wait_for(process.stdout.readline(), 20)
            code, err = await _spam_until_exit(process, pidfd, sig)
        finally:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # a failed attempt
            os.close(pidfd)
        assert code in (0, 128 + sig), (attempt, code, err)
        assert "Traceback" not in err, err
