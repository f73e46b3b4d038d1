"""``yamarket-chats due`` as a subprocess: the queue a sync leaves; a reply takes a chat out."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import BUSINESS
from tests.test_cli import cli, keyed
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

BUSINESSES = (BUSINESS, 2002)
CONFIG = FakeMarketConfig(businesses=BUSINESSES, chats_per_business=12, messages_per_chat=7)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with run_fake_server(CONFIG) as server:
        yield server


async def synced(fake: FakeServer, db: Path) -> None:
    code, _, err = await cli(
        "sync", *map(str, BUSINESSES), "--db", str(db), "-q", "--base-url", fake.url,
        env=keyed(fake),
    )  # fmt: skip
    assert code == 0, err


async def due(*args: str) -> list[dict[str, object]]:
    code, out, err = await cli("due", "--json", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def waiting_in_the_api(fake: FakeServer) -> set[int]:
    return {
        c.chat_id
        for b in BUSINESSES
        for c in fake.market.chats(b)
        if c.status in ("NEW", "WAITING_FOR_PARTNER")
    }


async def test_due_lists_exactly_the_waiting_chats_and_a_reply_takes_one_out(
    fake: FakeServer, tmp_path: Path
) -> None:
    db = tmp_path / "chats.db"
    await synced(fake, db)
    queue = await due("--db", str(db))
    assert {row["chat_id"] for row in queue} == waiting_in_the_api(fake)
    assert len(queue) == len(waiting_in_the_api(fake))  # each once
    since = [dt.datetime.fromisoformat(str(row["waiting_since"])) for row in queue]
    assert since == sorted(since) and all(s.tzinfo is not None for s in since)
    assert {"business_id", "chat_id", "status", "waiting_since", "last_message"} <= set(queue[0])

    first = queue[0]
    code, _, err = await cli(
        "send", str(first["business_id"]), str(first["chat_id"]), "-m", "Уже отвечаем",
        "--base-url", fake.url, env=keyed(fake),
    )  # fmt: skip
    assert code == 0, err
    assert first["chat_id"] in {row["chat_id"] for row in await due("--db", str(db))}
    await synced(fake, db)
    after = await due("--db", str(db))
    assert first["chat_id"] not in {row["chat_id"] for row in after}
    assert {row["chat_id"] for row in after} == waiting_in_the_api(fake)


async def test_filters_tsv_and_errors(fake: FakeServer, tmp_path: Path) -> None:
    db = tmp_path / "chats.db"
    chat_id = fake.market.add_chat(2002, status="NEW")
    fake.market.add_message(2002, chat_id, "line one\n\tline two [red]x[/red]")
    await synced(fake, db)
    queue = await due("--db", str(db))
    assert [r for r in queue if r["business_id"] == 2002] == await due(
        "--db", str(db), "--business", "2002"
    )
    assert await due("--db", str(db), "--business", "2002", "--business", "1001") == queue
    oldest = dt.datetime.fromisoformat(str(queue[0]["waiting_since"]))
    age = dt.datetime.now(dt.timezone.utc) - oldest
    recent = await due("--db", str(db), "--older-than", f"{int(age.total_seconds()) - 60}s")
    assert recent and recent == queue[: len(recent)]
    assert await due("--db", str(db), "--older-than", "30000d") == []

    code, out, err = await cli("due", "--db", str(db))  # piped: TSV
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split("\t")[:4] == ["business", "chat", "status", "waiting since"]
    assert len(rows) == len(queue)
    [row] = [r for r in rows if r.split("\t")[1] == str(chat_id)]
    assert row.split("\t")[-1] == "line one\\n\\tline two [red]x[/red]"  # one escaped field

    for args, said in [
        (["--older-than", "2 hours"], "not a duration"),
        (["--older-than", "1h30"], "not a duration"),  # 30 what?
        (["--older-than", "100000d"], "--older-than must be 0..3153600000 seconds"),
        (["--business", "x"], "--business"),
        (["--db", str(tmp_path / "none.db")], "no such SQLite database"),
        (["--db", str(tmp_path)], "not a file"),
    ]:
        code, _, err = await cli("due", *args)
        assert code == 2 and said in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["jsonl", "directory"])
async def test_a_file_the_desk_cannot_read_is_named(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "chats"
    if kind == "jsonl":
        path.write_text('{"kind":"chat","businessId":1}\n')
    else:
        path.mkdir()
    code, _, err = await cli("due", "--db", str(path))
    assert code == 2 and str(path) in err and "Traceback" not in err


async def test_due_reads_postgres_without_creating_anything(pg_url: str, tmp_path: Path) -> None:
    import asyncpg

    code, _, err = await cli("due", "--postgres-url", pg_url)
    assert code == 1 and "holds no synced tables" in err, err
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT to_regnamespace('yamarket_chats')") is None
    finally:
        await conn.close()
