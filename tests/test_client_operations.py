"""The seven operations, decoding, auth and validation, against the fake."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import BUSINESS
from yamarket_chats import (
    Chat,
    ChatContext,
    ChatContextIdentifiableType,
    ChatContextType,
    ChatMessage,
    ChatsClient,
    ChatStatus,
    ChatType,
    ForbiddenError,
    InvalidRequestError,
    MessageSender,
    NotFoundError,
    UnauthorizedError,
    YandexMarketError,
)
from yamarket_chats.testing import FakeMarketConfig, FakeServer


def first_chat(fake: FakeServer) -> int:
    return fake.market.chats(BUSINESS)[0].chat_id


async def test_get_chat_decodes_typed_struct(fake: FakeServer, client: ChatsClient) -> None:
    expected = fake.market.chats(BUSINESS)[0]
    chat = await client.get_chat(BUSINESS, expected.chat_id)
    assert isinstance(chat, Chat)
    assert chat.chat_id == expected.chat_id
    assert chat.type in set(ChatType) and chat.status in set(ChatStatus)
    assert chat.context.type in set(ChatContextType)
    assert chat.created_at.tzinfo is not None
    assert chat.created_at.utcoffset() == dt.timedelta(hours=3)
    assert chat.created_at == expected.created_at
    entry = fake.journal.entries("get_chat")[-1]
    assert entry.path == f"/v2/businesses/{BUSINESS}/chat"
    assert entry.query == {"chatId": str(expected.chat_id)}


async def test_get_chats_filters_and_pages(fake: FakeServer, client: ChatsClient) -> None:
    everything = [c async for c in client.iter_chats(BUSINESS, limit=2)]
    assert [c.chat_id for c in everything] == [c.chat_id for c in fake.market.chats(BUSINESS)]
    wanted = {c.status for c in everything}
    status = sorted(wanted)[0]
    filtered = [c async for c in client.iter_chats(BUSINESS, statuses=[ChatStatus(status)])]
    assert filtered and all(c.status == status for c in filtered)
    assert fake.journal.entries("get_chats")[-1].body == {"statuses": [status]}
    page = await client.get_chats(BUSINESS, limit=1)
    assert len(page.chats) == 1 and page.paging and page.paging.next_page_token


async def test_history_and_single_message(fake: FakeServer, client: ChatsClient) -> None:
    chat_id = first_chat(fake)
    expected = list(fake.market.messages(BUSINESS, chat_id))
    page = await client.get_chat_history(BUSINESS, chat_id, limit=10)
    assert [m.message_id for m in page.messages] == [m.message_id for m in expected[:10]]
    assert page.context.type in set(ChatContextType)
    one = await client.get_chat_message(BUSINESS, chat_id, expected[3].message_id)
    assert isinstance(one, ChatMessage)
    assert one.message_id == expected[3].message_id
    assert one.sender in set(MessageSender)
    assert (one.message, one.created_at) == (expected[3].message, expected[3].created_at)
    later = await client.get_chat_history(
        BUSINESS, chat_id, message_id_from=expected[-5].message_id
    )
    assert [m.message_id for m in later.messages] == [m.message_id for m in expected[-5:]]
    assert later.paging is None or not later.paging.next_page_token


async def test_payload_messages_decode(fake: FakeServer, client: ChatsClient) -> None:
    chat_id = first_chat(fake)
    messages = [m async for m in client.iter_chat_history(BUSINESS, chat_id)]
    with_files = [m for m in messages if m.payload]
    assert with_files, "the seeded data should hold file messages"
    assert all(p.url and p.size >= 0 and p.name for m in with_files for p in m.payload or ())


# The fake holds the orders and returns of its chats, and those declared in its config.
WITH_ORDERS = FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=2, orders=(987654,))


@pytest.mark.parametrize("fake", [WITH_ORDERS], indirect=True)
async def test_create_chat_returns_existing_for_same_context(
    fake: FakeServer, client: ChatsClient
) -> None:
    context = ChatContext(type=ChatContextIdentifiableType.ORDER, id=987654)
    first = await client.create_chat(BUSINESS, context=context)
    again = await client.create_chat(BUSINESS, context=context)
    assert first.chat_id == again.chat_id
    assert (await client.get_chat(BUSINESS, first.chat_id)).context.order_id == 987654
    assert fake.journal.entries("create_chat")[0].body == {
        "context": {"type": "ORDER", "id": 987654}
    }


@pytest.mark.parametrize("fake", [WITH_ORDERS], indirect=True)
async def test_create_chat_for_an_order_the_business_lacks_is_not_found(
    fake: FakeServer, client: ChatsClient
) -> None:
    for kwargs in ({"order_id": 987655}, {"context": ChatContext("RETURN", 987654)}):
        with pytest.raises(NotFoundError) as info:
            await client.create_chat(BUSINESS, **kwargs)  # type: ignore[arg-type]
        assert info.value.status == 404 and info.value.errors[0].code == "NOT_FOUND"
    assert [e.status for e in fake.journal] == [404, 404]  # a 404 is not retried
    assert len(fake.market.chats(BUSINESS)) == 2  # and no chat was made


async def test_send_message_appends(fake: FakeServer, client: ChatsClient) -> None:
    chat_id = first_chat(fake)
    before = fake.market.message_count(BUSINESS, chat_id)
    assert await client.send_message_to_chat(BUSINESS, chat_id, "Здравствуйте!") is None
    assert fake.market.message_count(BUSINESS, chat_id) == before + 1
    last = list(fake.market.messages(BUSINESS, chat_id))[-1]
    assert (last.message, last.sender) == ("Здравствуйте!", "PARTNER")


@pytest.mark.parametrize("kind", ["path", "bytes", "fileobj"])
async def test_send_file_from_path_bytes_or_file_object(
    fake: FakeServer, client: ChatsClient, tmp_path: Path, kind: str
) -> None:
    chat_id = first_chat(fake)
    content = b"%PDF-1.4 invoice" * 100
    path = tmp_path / "invoice.pdf"
    path.write_bytes(content)
    source = {"path": path, "bytes": content, "fileobj": io.BytesIO(content)}[kind]
    await client.send_file_to_chat(BUSINESS, chat_id, source, filename="invoice.pdf")
    upload = fake.journal.entries("send_file_to_chat")[-1].body["file"]
    assert upload["filename"] == "invoice.pdf" and upload["size"] == len(content)
    assert upload["content_type"] == "application/pdf"
    message = list(fake.market.messages(BUSINESS, chat_id))[-1]
    assert message.payload and message.payload[0].size == len(content)
    async with aiohttp.ClientSession() as http, http.get(message.payload[0].url) as resp:
        assert await resp.read() == content


async def test_oauth_token_is_sent_as_bearer(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    client = make_client(api_key=None, oauth_token=fake.oauth_token)
    assert (await client.get_chat(BUSINESS, first_chat(fake))).chat_id == first_chat(fake)


async def test_bad_credentials_raise_without_the_secret(
    fake: FakeServer, make_client: Callable[..., ChatsClient], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "ACMA:very-secret-key-123"
    client = make_client(api_key=secret)
    caplog.set_level(logging.DEBUG, logger="yamarket_chats")
    with pytest.raises(ForbiddenError) as info:
        await client.get_chat(BUSINESS, first_chat(fake))
    err = info.value
    assert err.status == 403 and err.errors and err.errors[0].code
    assert err.method == "get_chat" and err.business_id == BUSINESS
    for text in (str(err), repr(err), repr(client), caplog.text, repr(fake.journal.entries())):
        assert secret not in text
    assert caplog.records, "each request is logged at debug level"


async def test_missing_credentials_is_401(fake: FakeServer, client: ChatsClient) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{fake.url}/v2/businesses/{BUSINESS}/chat?chatId=1")
        assert resp.status == 401
    assert issubclass(UnauthorizedError, YandexMarketError)


async def test_unknown_chat_is_not_found(client: ChatsClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.get_chat(BUSINESS, 999_999_999)
    assert info.value.status == 404


def test_one_credential_is_required() -> None:
    with pytest.raises(InvalidRequestError, match=r"pass api_key .* or set YANDEX_MARKET_API_KEY"):
        ChatsClient()  # the suite's conftest clears the YANDEX_MARKET_* variables
    with pytest.raises(InvalidRequestError, match="exactly one"):
        ChatsClient(api_key="a", oauth_token="b")
    assert "secret" not in repr(ChatsClient(oauth_token="secret"))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.send_message_to_chat(BUSINESS, 1, ""), "1..4096 characters"),
        (lambda c: c.send_message_to_chat(BUSINESS, 1, "x" * 4097), "1..4096 characters"),
        (lambda c: c.send_file_to_chat(BUSINESS, 1, b""), "empty"),
        (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x" * (5 * 2**20 + 1)), "5 MiB"),
        (lambda c: c.get_chat_history(BUSINESS, 1, limit=101), "limit must be .* 1..100"),
        (lambda c: c.get_chats(BUSINESS, limit=21), "limit must be .* 1..20"),
        (lambda c: c.get_chats(BUSINESS, statuses=[]), "statuses must hold at least 1"),
        (lambda c: c.get_chat(BUSINESS, 0), "chat_id must be an integer >= 1"),
        (lambda c: c.get_chat(0, 1), "business_id must be an integer >= 1"),
        (lambda c: c.get_chat_message(BUSINESS, 1, -3), "message_id must be"),
        (lambda c: c.create_chat(BUSINESS), "needs order_id or context"),
        (lambda c: c.get_chat_history(BUSINESS, 1, message_id_from=0), "message_id_from"),
        (
            lambda c: c.get_chats(BUSINESS, statuses=[ChatStatus.NEW, "NEW"]),
            "statuses must not repeat",
        ),
        (
            lambda c: c.get_chats(BUSINESS, contexts=[ChatContext("ORDER", 0)]),
            r"contexts item.id must be an integer >= 1",
        ),
        (
            lambda c: c.create_chat(BUSINESS, context=ChatContext("DIRECT", 5)),
            "context.type must be one of ORDER, RETURN",
        ),
    ],
)
async def test_bad_input_is_refused_before_any_request(
    fake: FakeServer, client: ChatsClient, call: Callable[[ChatsClient], object], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match) as info:
        await call(client)  # type: ignore[misc]
    assert isinstance(info.value, ValueError)
    assert len(fake.journal) == 0


async def test_big_file_on_disk_is_refused_by_size(
    fake: FakeServer, client: ChatsClient, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    with path.open("wb") as f:
        f.truncate(6 * 2**20)
    with pytest.raises(InvalidRequestError, match="over the API's limit of 5 MiB"):
        await client.send_file_to_chat(BUSINESS, 1, path)
    assert len(fake.journal) == 0


async def test_unknown_enums_and_fields_decode(fake: FakeServer, client: ChatsClient) -> None:
    chat_id = first_chat(fake)
    fake.faults.add("unknown_enum", times=2)
    fake.faults.add("extra_fields", times=2)
    chat = await client.get_chat(BUSINESS, chat_id)
    assert chat.status not in set(ChatStatus) and isinstance(chat.status, str)
    page = await client.get_chat_history(BUSINESS, chat_id)
    assert any(m.sender not in set(MessageSender) for m in page.messages)
    chat2 = await client.get_chat(BUSINESS, chat_id)
    assert chat2.chat_id == chat_id
    page2 = await client.get_chat_history(BUSINESS, chat_id)
    assert [m.message_id for m in page2.messages] == [m.message_id for m in page.messages]


async def test_caller_session_settings_do_not_change_the_policy(fake: FakeServer) -> None:
    # raise_for_status on the caller's session must not turn a 404 into a
    # retried transport error.
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        client = ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session)
        with pytest.raises(NotFoundError):
            await client.get_chat(BUSINESS, 999_999_999)
    assert [e.status for e in fake.journal] == [404]


async def test_caller_session_is_not_closed(fake: FakeServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session) as c:
            await c.get_chat(BUSINESS, first_chat(fake))
        assert not session.closed
    await c.close()  # idempotent
    with pytest.raises(YandexMarketError, match="closed"):
        await c.get_chat(BUSINESS, first_chat(fake))


async def test_send_file_from_a_pipe(fake: FakeServer, client: ChatsClient) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"piped bytes")
    os.close(write_end)
    chat_id = first_chat(fake)
    await client.send_file_to_chat(BUSINESS, chat_id, f"/dev/fd/{read_end}", filename="p.txt")
    os.close(read_end)
    assert fake.journal.entries("send_file_to_chat")[-1].body["file"]["size"] == 11
