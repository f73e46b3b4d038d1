"""One sync per sink: the exclusive lock of SQLiteSink and JsonlSink (issue 14.2).

Syncs run in separate processes against the fake on loopback; each child
prints one JSON line when its sink is open and one when it is done.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.test_ingest import BUSINESSES, db_rows, expected, jsonl_rows
from yamarket_chats import InvalidRequestError, SinkLockedError
from yamarket_chats.sinks import JsonlSink, SQLiteSink
from yamarket_chats.testing import FakeServer

KINDS = ["sqlite", "jsonl"]
SinkType = Callable[..., SQLiteSink | JsonlSink]
SINKS: dict[str, SinkType] = {"sqlite": SQLiteSink, "jsonl": JsonlSink}

CHILD = """
import asyncio, json, logging, sys
from yamarket_chats import ChatsClient, JsonlSink, SQLiteSink, SinkLockedError, sync

logging.basicConfig(format="%(message)s")  # warnings on stderr, as a program shows them

kind, path, url, key, timeout, hold = sys.argv[1:]

def say(**fields):
    print(json.dumps(fields), flush=True)

async def main():
    make = SQLiteSink if kind == "sqlite" else JsonlSink
    try:
        sink = make(path, lock_timeout=float(timeout))
    except SinkLockedError as exc:
        say(locked=str(exc))
        return 3
    async with sink:
        say(opened=True)
        if hold == "1":  # keep the sink (and its lock) until told to go on
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        async with ChatsClient(api_key=key, base_url=url) as client:
            try:
                report = await sync(client, BUSINESSES, sink)
            except SinkLockedError as exc:
                say(locked=str(exc))
                return 3
    say(messages=report.messages)
    return 0

sys.exit(asyncio.run(main()))
""".replace("BUSINESSES", repr(list(BUSINESSES)))


class Child:
    """A sync in its own process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not raw:
            assert self.process.stderr is not None
            error = (await self.process.stderr.read()).decode(errors="replace")
            code = await self.process.wait()
            raise AssertionError(f"the child ended early (exit {code}):\n{error}")
        result: dict[str, Any] = json.loads(raw)
        return result

    async def log_line(self) -> str:
        """The next line the child logged (on stderr)."""
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.readline(), 60)).decode()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.process.wait(), 60)


StartChild = Callable[..., Awaitable[Child]]


@pytest_asyncio.fixture
async def start(fake: FakeServer) -> AsyncIterator[StartChild]:
    """Start syncs in child processes; any still running at teardown are killed."""
    children: list[Child] = []

    async def start_child(kind: str, path: Path, timeout: float = 0, hold: bool = False) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            kind,
            str(path),
            fake.url,
            fake.api_key,
            str(timeout),
            "1" if hold else "0",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        children.append(Child(process))
        return children[-1]

    yield start_child
    for child in children:
        if child.process.returncode is None:
            child.process.kill()
        await child.process.wait()


def rows(kind: str, path: Path) -> Any:
    return db_rows(path) if kind == "sqlite" else jsonl_rows(path)  # jsonl: fails on a duplicate


def sink_path(tmp_path: Path, kind: str) -> Path:
    return tmp_path / ("chats.db" if kind == "sqlite" else "chats.jsonl")


@pytest.mark.parametrize("kind", KINDS)
async def test_second_sync_fails_at_once_then_one_waits(
    fake: FakeServer, start: StartChild, tmp_path: Path, kind: str
) -> None:
    path = sink_path(tmp_path, kind)
    first = await start(kind, path, hold=True)
    assert await first.line() == {"opened": True}

    # lock_timeout=0 (the default): a clear error naming the file and the holder.
    second = await start(kind, path)
    message = (await second.line())["locked"]
    assert await second.exit_code() == 3
    assert str(path) in message and f"pid {first.process.pid}" in message
    assert "lock_timeout" in message

    # With a lock_timeout the next one waits for the first to finish, then resumes.
    third = await start(kind, path, timeout=60)
    assert await third.line() == {"opened": True}
    waiting = await third.log_line()  # the sign that it waits for the lock
    assert f"{path} is in use by another sync (pid {first.process.pid})" in waiting, waiting
    assert "waiting up to 60 s for its lock" in waiting
    assert not fake.journal.entries("get_chat_history")  # nobody synced yet
    first.go()
    assert await first.line() == {"messages": 2 * 5 * 230}
    assert await third.line() == {"messages": 0}
    assert (await first.exit_code(), await third.exit_code()) == (0, 0)
    assert rows(kind, path) == expected(fake)


@pytest.mark.parametrize("kind", KINDS)
async def test_two_syncs_started_together_store_every_message_once(
    fake: FakeServer, start: StartChild, tmp_path: Path, kind: str
) -> None:
    path = sink_path(tmp_path, kind)
    children = [await start(kind, path, timeout=60, hold=True) for _ in range(2)]
    for child in children:
        assert await child.line() == {"opened": True}
    for child in children:  # both go at once: without the lock, they race
        child.go()
    done = [await child.line() for child in children]
    assert [await child.exit_code() for child in children] == [0, 0]
    assert sorted(d["messages"] for d in done) == [0, 2 * 5 * 230]
    assert rows(kind, path) == expected(fake)


@pytest.mark.parametrize("kind", KINDS)
async def test_lock_of_a_killed_sync_is_released(
    fake: FakeServer, start: StartChild, tmp_path: Path, kind: str
) -> None:
    path = sink_path(tmp_path, kind)
    holder = await start(kind, path, hold=True)
    assert await holder.line() == {"opened": True}
    with pytest.raises(SinkLockedError):
        SINKS[kind](path)
    holder.process.send_signal(signal.SIGKILL)
    assert await holder.exit_code() == -signal.SIGKILL
    async with SINKS[kind](path) as sink:  # no stale lock: opens at once
        assert await sink.load_state(BUSINESSES[0]) == {}


@pytest.mark.parametrize("kind", KINDS)
async def test_in_process_second_sink_waits_without_blocking_the_loop(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = sink_path(tmp_path, kind)
    first = SINKS[kind](path)
    with pytest.raises(SinkLockedError, match=str(path)):
        SINKS[kind](path)

    started = time.monotonic()
    second = SINKS[kind](path, lock_timeout=30)  # returns at once: the thread waits
    assert time.monotonic() - started < 1
    state = asyncio.ensure_future(second.load_state(1))
    deadline = time.monotonic() + 10
    while "waiting up to 30 s for its lock" not in caplog.text:  # the thread's wait began
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert not state.done()
    await first.close()
    assert await asyncio.wait_for(state, 10) == {}
    await second.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_wait_gives_up_after_lock_timeout(tmp_path: Path, kind: str) -> None:
    path = sink_path(tmp_path, kind)
    async with SINKS[kind](path):
        started = time.monotonic()
        sink = SINKS[kind](path, lock_timeout=0.3)
        with pytest.raises(SinkLockedError, match=r"waited 0\.3 s"):
            await sink.load_state(1)
        assert 0.3 <= time.monotonic() - started < 10
        with pytest.raises(SinkLockedError):  # every later call, too
            await sink.save_chats(1, [])
        await sink.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_close_stops_a_wait_for_the_lock(tmp_path: Path, kind: str) -> None:
    path = sink_path(tmp_path, kind)
    async with SINKS[kind](path):
        sink = SINKS[kind](path, lock_timeout=600)
        started = time.monotonic()
        await sink.close()
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [-1, float("nan"), "5", True, None])
def test_bad_lock_timeout_is_refused(tmp_path: Path, kind: str, bad: Any) -> None:
    with pytest.raises(InvalidRequestError, match="lock_timeout"):
        SINKS[kind](sink_path(tmp_path, kind), lock_timeout=bad)
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


async def test_sqlite_lock_does_not_block_readers(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    async with SQLiteSink(path):
        assert (tmp_path / "chats.db.lock").exists()
        db = sqlite3.connect(path, timeout=0)
        try:
            assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        finally:
            db.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_symlink_to_the_sink_shares_its_lock(tmp_path: Path, kind: str) -> None:
    path = sink_path(tmp_path, kind)
    async with SINKS[kind](path):
        link = tmp_path / f"link-{path.name}"
        link.symlink_to(path)
        with pytest.raises(SinkLockedError, match=str(link)):
            SINKS[kind](link)


async def test_cancelled_close_still_closes_and_never_blocks_the_loop(tmp_path: Path) -> None:
    path = sink_path(tmp_path, "sqlite")
    sink = SQLiteSink(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another program writes: the sink's write waits
    try:
        save = asyncio.ensure_future(sink.save_chats(1, []))
        await asyncio.sleep(0.2)
        closing = asyncio.ensure_future(sink.close())
        await asyncio.sleep(0.1)
        closing.cancel()  # e.g. wait_for() timing out, a second Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await closing  # at once: the loop is not held until the writer is done
        assert not save.done()
        with pytest.raises(SinkLockedError):
            SQLiteSink(path)  # still closing: the save is not written yet
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(sink.close(), 30)  # a second close() finishes the job
    assert save.done() and save.exception() is None
    async with SQLiteSink(path) as again:  # the lock was released
        assert await again.load_state(1) == {}


async def test_sqlite_load_state_runs_on_the_sinks_thread(tmp_path: Path) -> None:
    async with SQLiteSink(sink_path(tmp_path, "sqlite")) as sink:
        threads = []
        read = sink._load_state

        def load_state(business_id: int) -> Any:
            threads.append(threading.current_thread())
            return read(business_id)

        sink._load_state = load_state  # type: ignore[method-assign]
        for business in (1, 2):
            assert await sink.load_state(business) == {}
    assert len(threads) == 2 and threading.main_thread() not in threads


def odd_paths(tmp_path: Path) -> list[tuple[Path, str]]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    return [(Path("/dev/null"), "a device"), (fifo, "a FIFO"), (tmp_path / "dir", "a directory")]


@pytest.mark.parametrize("kind", KINDS)
def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    for path, what in odd_paths(tmp_path):
        with pytest.raises(InvalidRequestError, match=f"{path} is {what}: a sink writes to"):
            SINKS[kind](path)
