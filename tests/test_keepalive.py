"""Connection reuse: reads pool connections, sends never do (issue 11).

The fake counts the TCP connections it accepts and journals which connection
carried each request, so reuse is seen from the server's side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import BUSINESS
from yamarket_chats import ChatsClient, TransportError
from yamarket_chats.testing import FakeMarketConfig, FakeServer


def keep_alive(**options: object) -> FakeMarketConfig:
    return FakeMarketConfig(
        businesses=(BUSINESS,),
        chats_per_business=3,
        messages_per_chat=40,
        keep_alive=True,
        **options,  # type: ignore[arg-type]
    )


async def read_a_lot(client: ChatsClient, fake: FakeServer, n: int) -> None:
    chats = fake.market.chats(BUSINESS)

    async def one(i: int) -> None:
        chat = chats[i % len(chats)]
        if i % 2:
            await client.get_chat(BUSINESS, chat.chat_id)
        else:
            await client.get_chat_history(BUSINESS, chat.chat_id, limit=10)

    for start in range(0, n, 10):  # bursts of 10 tasks, 4 in flight at a time
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 10))))


@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_reads_reuse_connections(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(limits={"get_chat": None, "get_chat_history": None})
    await read_a_lot(client, fake, 100)
    assert [e.status for e in fake.journal] == [200] * 100
    assert fake.connections <= 4 + 2, fake.connections
    assert len({e.connection for e in fake.journal}) == fake.connections


@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_keep_alive_false_closes_every_connection(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(keep_alive=False)
    await read_a_lot(client, fake, 20)
    assert fake.connections == 20
    assert len({e.connection for e in fake.journal}) == 20


@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_sends_never_reuse_a_pooled_connection(fake: FakeServer, client: ChatsClient) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    for _ in range(3):
        await client.get_chat(BUSINESS, chat_id)
        await client.send_message_to_chat(BUSINESS, chat_id, "hello")
        await client.send_file_to_chat(BUSINESS, chat_id, b"%PDF", filename="a.pdf")
        await client.get_chat_history(BUSINESS, chat_id, limit=5)
    reads = {e.connection for e in fake.journal if e.operation.startswith("get_")}
    sends = [e.connection for e in fake.journal if e.operation.startswith("send_")]
    assert len(reads) == 1  # one pooled connection carried every read
    assert len(set(sends)) == len(sends) == 6  # each send had a connection of its own
    assert not reads & set(sends)
    # and the server was told to close each send's connection
    assert fake.open_connections <= 1


@pytest.mark.parametrize("fake", [keep_alive(max_requests_per_connection=1)], indirect=True)
async def test_a_stale_pooled_connection_is_retried_at_once(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # The server "closes" each connection after one answer, as a request
    # reuses it: with retries off, reads still succeed, POST and GET alike.
    client = make_client(max_retries=0, backoff=5.0, max_backoff=5.0)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    for _ in range(3):
        page = await asyncio.wait_for(client.get_chat_history(BUSINESS, chat_id, limit=5), 2.0)
        assert len(page.messages) == 5
        chat = await asyncio.wait_for(client.get_chat(BUSINESS, chat_id), 2.0)
        assert chat.chat_id == chat_id
    stale = [e for e in fake.journal if e.fault == "stale_connection"]
    assert stale, "the fake never saw a stale reuse: the test proves nothing"
    assert {e.operation for e in stale} >= {"get_chat_history"}
    assert [e.status for e in fake.journal if e.fault is None] == [200] * 6


@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_a_drop_on_a_fresh_connection_is_still_a_failure(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(max_retries=0)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("drop", times=1, operations={"get_chat_history"})
    with pytest.raises(TransportError):
        await client.get_chat_history(BUSINESS, chat_id, limit=5)
    assert len(fake.journal) == 1


@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_a_callers_session_is_used_as_configured(fake: FakeServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session) as client:
            await read_a_lot(client, fake, 20)
        assert not session.closed
    assert fake.connections <= 4 + 2
