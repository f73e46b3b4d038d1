"""The PostgreSQL sink's own pool does not reset a connection after every page written."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BUSINESS
from tests.pg_server import postgres_server, server_or_skip
from yamarket_chats import ChatsClient
from yamarket_chats.ingest import sync
from yamarket_chats.sinks import PostgresSink
from yamarket_chats.testing import FakeServer


async def test_a_sync_writes_pages_without_a_reset_per_release(
    fake: FakeServer, client: ChatsClient, tmp_path: Path
) -> None:
    server_or_skip()  # skips locally without PostgreSQL, fails under CI
    with postgres_server(settings={"log_statement": "all"}) as server:
        url = server.create_database()
        async with PostgresSink(url) as sink:
            report = await sync(client, [BUSINESS, 2002], sink)
        log = server.log()
    assert report.pages > 10
    assert log.count("INSERT INTO yamarket_chats.messages") >= report.pages
    for statement in ("RESET ALL", "UNLISTEN", "pg_advisory_unlock_all", "CLOSE ALL"):
        assert statement not in log, statement
