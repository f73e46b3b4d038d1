"""Connection reuse: reads pool connections, sends never do (issue 11).

The fake counts the TCP connections it accepts and journals which connection
carried each request, so reuse is seen from the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import BUSINESS
from yamarket_chats import (
    ChatsClient,
    InvalidRequestError,
    RateLimit,
    TransportError,
    YandexMarketError,
)
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server, self_signed_tls


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


@contextlib.asynccontextmanager
async def client_for(
    fake: FakeServer, callers_session: bool, **options: object
) -> AsyncIterator[ChatsClient]:
    """A client of its own sessions, or through a caller's default (pooling) session."""
    async with contextlib.AsyncExitStack() as stack:
        if callers_session:
            options["session"] = await stack.enter_async_context(aiohttp.ClientSession())
        client = ChatsClient(api_key=fake.api_key, base_url=fake.url, **options)  # type: ignore[arg-type]
        yield await stack.enter_async_context(client)


@pytest.mark.parametrize("callers_session", [False, True], ids=["own", "callers"])
@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_sends_never_reuse_a_pooled_connection(
    fake: FakeServer, callers_session: bool
) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    async with client_for(fake, callers_session) as client:
        for _ in range(3):
            await client.get_chat(BUSINESS, chat_id)
            await client.send_message_to_chat(BUSINESS, chat_id, "hello")
            await client.send_file_to_chat(BUSINESS, chat_id, b"%PDF", filename="a.pdf")
            await client.get_chat_history(BUSINESS, chat_id, limit=5)
    reads = {e.connection for e in fake.journal if e.operation.startswith("get_")}
    sends = [e for e in fake.journal if e.operation.startswith("send_")]
    assert len(reads) == 1  # one pooled connection carried every read
    assert len({e.connection for e in sends}) == len(sends) == 6  # each its own connection
    assert not any(e.reused for e in sends)
    assert not reads & {e.connection for e in sends}
    # and the server was told to close each send's connection
    assert fake.open_connections <= 1


@pytest.mark.parametrize("callers_session", [False, True], ids=["own", "callers"])
@pytest.mark.parametrize("fake", [keep_alive(max_requests_per_connection=1)], indirect=True)
async def test_a_send_never_meets_a_stale_pooled_connection(
    fake: FakeServer, callers_session: bool
) -> None:
    # The server closes each connection after one answer: a send on a pooled
    # socket would fail with its fate unknown. Sends take fresh connections.
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    before = fake.market.message_count(BUSINESS, chat_id)
    async with client_for(fake, callers_session, max_retries=0) as client:
        for _ in range(3):
            await client.get_chat(BUSINESS, chat_id)
            await client.send_message_to_chat(BUSINESS, chat_id, "hello")
    assert fake.market.message_count(BUSINESS, chat_id) == before + 3
    assert not [e for e in fake.journal if e.operation.startswith("send_") and e.fault]


async def test_a_callers_force_close_session_and_tls_settings_carry_sends() -> None:
    # A caller's session that trusts only the fake's own CA: sends still get
    # through (they go on a fresh connection with the caller's TLS settings),
    # and a caller's force-close session is used for sends as it is.
    tls = self_signed_tls()
    config = FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=1, keep_alive=True)
    async with run_fake_server(config, ssl_context=tls.server_context) as fake:
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        for force_close in (False, True):
            connector = aiohttp.TCPConnector(ssl=tls.client_context, force_close=force_close)
            session = aiohttp.ClientSession(connector=connector)
            async with (
                session,
                ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session) as client,
            ):
                await client.get_chat(BUSINESS, chat_id)
                await client.send_message_to_chat(BUSINESS, chat_id, "hello")
                made = client._transport.sessions._callers_fresh
                assert (made is None) is force_close
        sends = [e for e in fake.journal if e.operation.startswith("send_")]
        assert [e.status for e in sends] == [200, 200]
        assert not any(e.reused for e in sends)


async def test_a_pooling_connector_that_cannot_be_copied_refuses_sends(tmp_path: Path) -> None:
    # A Unix-socket (or SOCKS proxy) connector that pools: the client cannot
    # make a faithful force-close copy for sends, so it says so up front.
    connector = aiohttp.UnixConnector(path=str(tmp_path / "nowhere.sock"))
    async with aiohttp.ClientSession(connector=connector) as session:
        client = ChatsClient(api_key="k", base_url="http://127.0.0.1:9", session=session)
        async with client:
            with pytest.raises(InvalidRequestError, match=r"UnixConnector.*force_close=True"):
                await client.send_message_to_chat(BUSINESS, 1, "hello")
        assert client.stats.requests == 0


@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_a_closed_callers_session_stops_reads_and_sends(fake: FakeServer) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    session = aiohttp.ClientSession()
    async with ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session) as client:
        await client.send_message_to_chat(BUSINESS, chat_id, "hello")
        await session.close()
        with pytest.raises(YandexMarketError, match="session= is closed; nothing was sent"):
            await client.send_message_to_chat(BUSINESS, chat_id, "hello")
        with pytest.raises(YandexMarketError, match="session= is closed"):
            await client.get_chat(BUSINESS, chat_id)
    assert len(fake.journal) == 1


@pytest.mark.parametrize("fake", [keep_alive(max_requests_per_connection=1)], indirect=True)
async def test_a_stale_pooled_connection_is_retried_at_once(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # The server "closes" each connection after one answer, as a request
    # reuses it: with retries off, reads still succeed, POST and GET alike,
    # each stale attempt retried by the client itself (aiohttp's own silent
    # retry of a GET is off: it would hide a request from stats and limits).
    client = make_client(max_retries=0, backoff=5.0, max_backoff=5.0)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    for _ in range(2):
        for _ in range(2):  # the second reuses the first's pooled connection
            page = await asyncio.wait_for(client.get_chat_history(BUSINESS, chat_id, limit=5), 2.0)
            assert len(page.messages) == 5
        for _ in range(2):
            chat = await asyncio.wait_for(client.get_chat(BUSINESS, chat_id), 2.0)
            assert chat.chat_id == chat_id
    stale = [e for e in fake.journal if e.fault == "stale_connection"]
    assert stale, "the fake never saw a stale reuse: the test proves nothing"
    assert {e.operation for e in stale} == {"get_chat_history", "get_chat"}
    assert [e.status for e in fake.journal if e.fault is None] == [200] * 8
    assert client.stats.requests == len(fake.journal)  # every request seen and counted
    ops = client.stats.snapshot().operations
    assert sum(o.transport_errors for o in ops) == len(stale)
    assert sum(o.failed_calls for o in ops) == 0


@pytest.mark.parametrize("fake", [keep_alive(max_requests_per_connection=1)], indirect=True)
async def test_a_stale_pooled_request_spends_no_quota(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # Three tokens for three reads: the stale attempt never reached the
    # server, so it gives its token (and the server-count estimate) back.
    client = make_client(max_wait=2, limits={"get_chat_history": RateLimit(3, 3600, burst=3)})
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    for _ in range(3):
        await client.get_chat_history(BUSINESS, chat_id, limit=5)
    assert [e.fault for e in fake.journal].count("stale_connection") >= 1
    assert [e.status for e in fake.journal if e.fault is None] == [200] * 3


@pytest.mark.parametrize("keep", [True, False], ids=["keep_alive", "close"])
@pytest.mark.parametrize("operation", ["get_chat_history", "get_chat"])
@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_a_drop_on_a_fresh_connection_is_still_a_failure(
    fake: FakeServer, make_client: Callable[..., ChatsClient], operation: str, keep: bool
) -> None:
    # GET (get_chat) included: aiohttp would silently send it again.
    client = make_client(max_retries=0, keep_alive=keep)
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    fake.faults.add("drop", times=1, operations={operation})
    with pytest.raises(TransportError):
        if operation == "get_chat":
            await client.get_chat(BUSINESS, chat_id)
        else:
            await client.get_chat_history(BUSINESS, chat_id, limit=5)
    assert len(fake.journal) == 1
    assert client.stats.requests == 1


@pytest.mark.parametrize("fake", [keep_alive()], indirect=True)
async def test_a_callers_session_is_used_as_configured(fake: FakeServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session) as client:
            await read_a_lot(client, fake, 20)
        assert not session.closed
    assert fake.connections <= 4 + 2


async def test_reads_leave_the_pool_while_the_server_closes_every_connection(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    # The default fake closes every connection, like the API: after a streak
    # of `Connection: close` answers reads skip the pool (its bookkeeping buys
    # nothing), and come back to it once a re-probe finds a connection kept.
    client = make_client(limits={"get_chat": None})
    chat = fake.market.chats(BUSINESS)[0].chat_id
    transport = client._transport
    for _ in range(20):
        await client.get_chat(BUSINESS, chat)
    assert transport.sessions._closes >= 8
    assert transport.sessions._bypassed > 0  # sent through the force-close session
    # The server starts keeping connections: a re-probe of the pool notices.
    fake._api.config = dataclasses.replace(fake._api.config, keep_alive=True)
    before = len(fake.journal)
    for _ in range(100):
        await client.get_chat(BUSINESS, chat)
    tail = [e.connection for e in fake.journal][before + 80 :]
    assert [e.status for e in fake.journal] == [200] * (before + 100)
    assert len(set(tail)) == 1, tail  # back on one pooled connection
