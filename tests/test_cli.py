"""The ``yamarket-chats`` CLI as a subprocess, against a fake served by the test process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSINESS
from tests.test_ingest import BUSINESSES, db_rows, expected
from yamarket_chats.testing import FakeServer

SECRET = "ACMA:definitely-wrong-key"


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m yamarket_chats.cli ARGS`` without blocking the fake's loop."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("YANDEX_MARKET_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "yamarket_chats.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def keyed(fake: FakeServer) -> dict[str, str]:
    return {"YANDEX_MARKET_API_KEY": fake.api_key}


def assert_clean_failure(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


async def test_help() -> None:
    code, out, _ = await cli("--help")
    assert code == 0
    for word in ("sync", "chats", "history", "send", "fake-server", "demo", "Exit codes"):
        assert word in out
    code, out, _ = await cli("sync", "--help")
    assert code == 0 and "--db" in out and "YANDEX_MARKET_API_KEY" in out
    assert "YANDEX_MARKET_BASE_URL" in out


@pytest.mark.parametrize(
    "args",
    [
        ["sync"],
        ["sync", "abc"],
        ["sync", "1", "--db", "a", "--jsonl", "b"],
        ["nope"],
        ["send", "1"],
    ],
)
async def test_bad_arguments_exit_2(args: list[str]) -> None:
    code, _, err = await cli(*args)
    assert code == 2 and "usage:" in err and "Traceback" not in err


async def test_missing_credentials_exit_2(tmp_path: Path) -> None:
    code, _, err = await cli("sync", "1001", "--db", str(tmp_path / "c.db"))
    assert code == 2 and "YANDEX_MARKET_API_KEY" in err
    assert_clean_failure(err)


async def test_sync_into_sqlite_then_nothing_new(fake: FakeServer, tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    args = ["sync", *map(str, BUSINESSES), "--db", db, "--base-url", fake.url]
    code, out, err = await cli(*args, env=keyed(fake))
    assert code == 0, err
    assert db_rows(Path(db)) == expected(fake)
    assert "\x1b" not in out + err  # no terminal codes when not a TTY
    assert "2300 new messages" in out and "sync: chats 10/10" in err
    code, out, _ = await cli(*args, env=keyed(fake))
    assert code == 0 and "0 new messages" in out and "10 unchanged" in out
    code, out, err = await cli(*args, "--quiet", env=keyed(fake))
    assert code == 0 and out == "" and err == ""


async def test_sync_into_jsonl_with_oauth_token(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    args = ["sync", str(BUSINESS), "--jsonl", str(path), "--base-url", fake.url, "-q"]
    code, _, err = await cli(*args, env={"YANDEX_MARKET_OAUTH_TOKEN": fake.oauth_token})
    assert code == 0, err
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sum(1 for d in lines if d["kind"] == "message") == 5 * 230


async def test_bad_key_exits_3_without_printing_it(fake: FakeServer, tmp_path: Path) -> None:
    args = ["sync", str(BUSINESS), "--db", str(tmp_path / "c.db"), "--base-url", fake.url]
    code, out, err = await cli(*args, "--api-key", SECRET)
    assert code == 3, err
    assert "authentication failed (HTTP 403)" in err
    assert SECRET not in out + err and "definitely-wrong" not in out + err
    assert_clean_failure(err)


async def test_unreachable_api_exits_4(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["chats", "1001", "--base-url", f"http://127.0.0.1:{port}", "--max-retries", "0"]
    code, _, err = await cli(*args, env={"YANDEX_MARKET_API_KEY": SECRET})
    assert code == 4 and "cannot reach the API" in err and SECRET not in err
    assert_clean_failure(err)


def json_lines(out: str) -> list[dict[str, Any]]:
    """Every line of `out` as a JSON object (fails on a torn or non-object line)."""
    objects = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(o, dict) for o in objects) and out.endswith("\n")
    return objects


async def test_chats_and_history_json_lines(fake: FakeServer) -> None:
    code, out, err = await cli("chats", "2002", "--json", "--base-url", fake.url, env=keyed(fake))
    assert code == 0, err
    chats = json_lines(out)
    assert [c["chatId"] for c in chats] == [c.chat_id for c in fake.market.chats(2002)]
    assert chats[0]["context"]["customer"]["name"]

    chat = fake.market.chats(2002)[2]
    args = ["history", "2002", str(chat.chat_id), "--json", "--base-url", fake.url]
    code, out, err = await cli(*args, env=keyed(fake))
    assert code == 0, err
    got = json_lines(out)
    assert [m["messageId"] for m in got] == [
        m.message_id for m in fake.market.messages(2002, chat.chat_id)
    ]
    start = chat.first_message_id + 200
    code, out, _ = await cli(*args, "--from", str(start), env=keyed(fake))
    assert [m["messageId"] for m in json_lines(out)] == list(range(start, start + 30))


async def test_chats_and_history_as_plain_tables(fake: FakeServer) -> None:
    args = ["chats", str(BUSINESS), "--status", "NEW", "--base-url", fake.url]
    code, out, _ = await cli(*args, env=keyed(fake))
    new = [c for c in fake.market.chats(BUSINESS) if c.status == "NEW"]
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("chat\tstatus")
    assert [int(line.split("\t")[0]) for line in lines[1:]] == [c.chat_id for c in new]
    args = ["history", str(BUSINESS), str(new[0].chat_id), "--base-url", fake.url]
    code, out, _ = await cli(*args, env=keyed(fake))
    assert code == 0 and len(out.splitlines()) == 1 + 230


async def test_send_message_and_file(fake: FakeServer, tmp_path: Path) -> None:
    chat = fake.market.chats(BUSINESS)[0]
    base = ["send", str(BUSINESS), str(chat.chat_id), "--base-url", fake.url]
    code, _, err = await cli(*base, "-m", "Здравствуйте!", env=keyed(fake))
    assert code == 0, err
    file = tmp_path / "invoice.pdf"
    file.write_bytes(b"%PDF-1.4 fake")
    code, _, err = await cli(*base, "--file", str(file), env=keyed(fake))
    assert code == 0, err
    text, sent_file = chat.appended
    assert (text.message, text.sender) == ("Здравствуйте!", "PARTNER")
    assert sent_file.payload is not None and sent_file.payload[0].name == "invoice.pdf"
    code, _, err = await cli(*base, "-m", "x" * 5000, env=keyed(fake))
    assert code == 2 and "4096" in err
    assert_clean_failure(err)


async def test_send_whose_connection_drops_says_it_may_have_been_delivered(
    fake: FakeServer,
) -> None:
    chat = fake.market.chats(BUSINESS)[0]
    fake.faults.add("drop_after", times=1, operations={"send_message_to_chat"})
    base = ["send", str(BUSINESS), str(chat.chat_id), "--base-url", fake.url]
    code, _, err = await cli(*base, "-m", "hello", env=keyed(fake))
    assert code == 4
    assert "may have been delivered" in err
    assert_clean_failure(err)
    assert len(chat.appended) == 1  # it was: the server acted, then the line dropped


async def test_ctrl_c_exits_130_and_the_next_run_continues(
    fake: FakeServer, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    fake.faults.add("latency", delay=0.05, operations={"get_chat_history"})
    args = ["sync", *map(str, BUSINESSES), "--db", str(db), "--base-url", fake.url]
    base = {k: v for k, v in os.environ.items() if not k.startswith("YANDEX_MARKET_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yamarket_chats.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**base, **keyed(fake)},
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while len(fake.journal.entries("get_chat_history", status=200)) < 6:
        assert time.monotonic() < deadline, "the sync never got going"
        await asyncio.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 130, err.decode()
    assert "run again to continue" in err.decode() and "Traceback" not in err.decode()
    with contextlib.closing(sqlite3.connect(db)) as conn:  # (a plain `with` never closes)
        kept = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert 0 < kept < 2300
    fake.faults.clear()
    code, out, err2 = await cli(*args, env=keyed(fake))
    assert code == 0, err2
    assert f"{2300 - kept} new messages" in out
    assert db_rows(db) == expected(fake)


async def test_demo_runs_to_completion(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    code, out, err = await cli("demo", "--db", str(db), "--chats", "10", "--messages", "60")
    assert code == 0, err
    assert "\x1b" not in out + err
    assert "full sync: 20 chats (20 fetched, 0 unchanged), 1200 new messages" in out
    assert "incremental sync: 20 chats (6 fetched, 14 unchanged), 12 new messages" in out
    assert f"{db} (kept): 20 chats, 1212 messages" in out
    assert "full sync: chats 20/20" in err
    # Time waiting on limits is the share of the run during which some request waited.
    shares = [int(x) for x in re.findall(r"\((\d+)% of it waiting on rate limits\)", out)]
    assert len(shares) == 2 and all(0 <= x <= 100 for x in shares), out
    assert "all tasks" not in out
    code, _, err = await cli("demo", "--db", str(db))
    assert code == 2 and "exists" in err


async def test_fake_server_command_serves_until_interrupted() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yamarket_chats.cli", "fake-server", "--port", "0",
        "--businesses", "7,8", "--chats", "2", "--messages", "3",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
    url = first.rsplit(" ", 1)[1].strip()
    code, out, err = await cli("chats", "8", "--json", "--base-url", url,
                               env={"YANDEX_MARKET_API_KEY": "ACMA:fake-api-key"})  # fmt: skip
    assert code == 0, err
    assert len(json_lines(out)) == 2
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 130  # 128 + SIGINT, as every command (SIGTERM: 143)


async def test_the_base_url_comes_from_the_environment_when_the_option_is_absent(
    fake: FakeServer,
) -> None:
    env = {**keyed(fake), "YANDEX_MARKET_BASE_URL": fake.url}
    code, out, err = await cli("chats", str(BUSINESS), "--json", env=env)
    assert code == 0, err
    assert len(json_lines(out)) == len(fake.market.chats(BUSINESS))
    # The option beats the variable (which is then not even read).
    env["YANDEX_MARKET_BASE_URL"] = "http://[::1"
    code, _, err = await cli("chats", str(BUSINESS), "--json", "--base-url", fake.url, env=env)
    assert code == 0, err
    # A bad variable is a usage error naming it, never showing its password.
    env["YANDEX_MARKET_BASE_URL"] = "http://bob:S3cretPW@example.com"
    code, out, err = await cli("chats", str(BUSINESS), env=env)
    assert code == 2, err
    assert_clean_failure(err)
    assert "YANDEX_MARKET_BASE_URL" in err and "S3cretPW" not in out + err
    assert len(fake.journal) == 2


async def test_the_first_retry_of_a_run_is_one_warning_even_without_v(fake: FakeServer) -> None:
    """Without -v a retried call used to be silent (a host that never answers: a minute
    of nothing); now the first retry says so in one line, and later ones stay quiet."""
    fake.faults.add("status_503", times=2, operations={"get_chats"})
    args = ["chats", str(BUSINESS), "--json", "--base-url", fake.url]
    code, out, err = await cli(*args, env=keyed(fake))
    assert code == 0, err
    assert len(fake.journal.entries("get_chats", status=503)) == 2  # two retries...
    [line] = err.splitlines()  # ...one line
    assert line.startswith(f"yamarket-chats: WARNING: get_chats business={BUSINESS}: HTTP 503; ")
    assert "attempt 2 in " in line and " s" in line, line
    assert fake.api_key not in err and len(json_lines(out)) == 5


async def test_with_v_every_retry_is_logged_once(fake: FakeServer) -> None:
    fake.faults.add("status_503", times=1, operations={"get_chats"})
    args = ["chats", str(BUSINESS), "--json", "--base-url", fake.url, "-v"]
    code, _, err = await cli(*args, env=keyed(fake))
    assert code == 0, err
    [line] = [line for line in err.splitlines() if "HTTP 503" in line]  # the client's own
    assert line.startswith("yamarket-chats: WARNING: get_chats business=1001: HTTP 503; retry in")
