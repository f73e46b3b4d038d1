"""Answers as the spec allows them, and answers that do not fit it, against the fake.

The spec's ``date-time`` fields may carry a leap second (``23:59:60``) or, as
some answers do, no seconds at all: both decode to aware datetimes (the rule
is in `yamarket_chats.models`' docstring). An answer that does not fit the
spec is raised at once, naming the field: retrying it would get the same
answer and spend quota each time. The fake's ``body`` fault serves each
answer, after the request has gone through the fake's auth, quota and handler.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tests.conftest import BUSINESS
from yamarket_chats import ChatsClient, TransportError
from yamarket_chats._transport.retry import Answer, Kind, classify
from yamarket_chats.errors import ResponseDecodeError
from yamarket_chats.models import ChatHistoryPage, _Envelope
from yamarket_chats.testing import FakeServer

UTC = dt.timezone.utc
MSK = dt.timezone(dt.timedelta(hours=3))
LAST_MICROSECOND = dt.datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)


def ok(result: Any) -> bytes:
    return msgspec.json.encode({"status": "OK", "result": result})


def chat(created: str, updated: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "chatId": 1,
        "context": {"type": "ORDER", "orderId": 5},
        "type": "CHAT",
        "status": "NEW",
        "createdAt": created,
        "updatedAt": updated,
    }


def message(message_id: int, created: str) -> dict[str, Any]:
    return {"messageId": message_id, "createdAt": created, "sender": "CUSTOMER", "message": "hi"}


def history(*created: str) -> bytes:
    messages = [message(i, c) for i, c in enumerate(created, 1)]
    return ok({"context": {"type": "ORDER", "orderId": 5}, "messages": messages, "paging": {}})


def answer(fake: FakeServer, operation: str, body: bytes) -> None:
    fake.faults.add("body", times=1, operations=[operation], body=body)


def chat_id(fake: FakeServer) -> int:
    return fake.market.chats(BUSINESS)[0].chat_id


def first_message(fake: FakeServer) -> int:
    return fake.market.chats(BUSINESS)[0].first_message_id


# --- timestamps the spec allows ------------------------------------------------------


async def test_a_leap_second_and_a_time_without_seconds_decode(
    fake: FakeServer, client: ChatsClient
) -> None:
    answer(
        fake, "get_chats", ok({"chats": [chat("2026-06-30T23:59:60Z", "2026-12-07T10:15+03:00")]})
    )
    [got] = (await client.get_chats(BUSINESS)).chats
    assert got.created_at == LAST_MICROSECOND and got.created_at.tzinfo is not None
    assert got.updated_at == dt.datetime(2026, 12, 7, 10, 15, tzinfo=MSK)
    assert got.updated_at.utcoffset() == dt.timedelta(hours=3)  # the server's offset is kept
    assert len(fake.journal.entries("get_chats")) == 1


async def test_a_leap_second_keeps_the_order_of_timestamps(
    fake: FakeServer, client: ChatsClient
) -> None:
    times = [
        "2026-06-30T23:59:59Z",
        "2026-06-30T23:59:59.5Z",
        "2026-06-30T23:59:60Z",
        "2026-06-30T23:59:60.75Z",
        "2026-07-01T02:59:60+03:00",  # the same leap second, in Moscow
        "2026-07-01T00:00:00Z",
    ]
    answer(fake, "get_chat_history", history(*times))
    page = await client.get_chat_history(BUSINESS, chat_id(fake))
    decoded = [m.created_at for m in page.messages]
    assert decoded == sorted(decoded)  # monotonic: never later than the next second
    assert decoded[2] == decoded[3] == decoded[4] == LAST_MICROSECOND
    assert decoded[4].utcoffset() == dt.timedelta(hours=3)
    assert decoded[2] < decoded[5] and decoded[1] < decoded[2]


async def test_a_single_message_without_seconds_decodes(
    fake: FakeServer, client: ChatsClient
) -> None:
    answer(fake, "get_chat_message", ok(message(7, "2026-12-07T10:15+03:00")))
    got = await client.get_chat_message(BUSINESS, chat_id(fake), first_message(fake))
    assert got.created_at == dt.datetime(2026, 12, 7, 10, 15, tzinfo=MSK)


def test_ordinary_timestamps_never_take_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The second reading (the schema walk) runs only after msgspec refused an answer.
    from yamarket_chats import models

    def refuse(kind: Any) -> Any:
        raise AssertionError("the slow path was taken")

    monkeypatch.setattr(models, "_time_fields", refuse)
    decoder = msgspec.json.Decoder(_Envelope[ChatHistoryPage])
    raw = history("2026-06-30T23:59:59Z", "2026-12-07T10:15:00.123+03:00")
    outcome = classify(
        Answer(200, raw, None, None, False, False, 0.0, 0.0),
        method="get_chat_history",
        business_id=BUSINESS,
        decoder=decoder,
        max_wait=None,
    )
    assert outcome.kind == Kind.OK and len(outcome.result.messages) == 2


# --- answers that do not fit the spec: one request, then the field named ------------

NOT_FITTING = [
    pytest.param(
        "get_chats",
        ok({"chats": [chat("2026-06-30T23:59:61Z")]}),
        "$.result.chats[0].createdAt",
        id="second 61",
    ),
    pytest.param(
        "get_chats",
        ok({"chats": [chat("2026-06-30T23:59:60Z", "yesterday")]}),
        "$.result.chats[0].updatedAt",  # the field that still fails, not the leap second
        id="a leap second and a bad time",
    ),
    pytest.param("get_chat", b'{"status":"OK"}', "$.result", id="200 without result"),
    pytest.param("get_chat", ok(None), "$.result", id="null result"),
    pytest.param(
        "get_chat_history",
        ok({"context": {"type": "ORDER"}, "messages": [message(1, "2026-06-30T23:59")]}),
        "$.result.messages[0].createdAt",
        id="no offset",
    ),
    pytest.param(
        "get_chat_message",
        ok({"messageId": "7", "createdAt": "2026-01-01T00:00:00Z", "sender": "MARKET"}),
        "$.result.messageId",
        id="a string id",
    ),
    pytest.param("create_chat", ok({}), "$.result.chatId", id="createChat without chatId"),
]


async def call(client: ChatsClient, fake: FakeServer, operation: str) -> object:
    if operation == "get_chats":
        return await client.get_chats(BUSINESS)
    if operation == "get_chat":
        return await client.get_chat(BUSINESS, chat_id(fake))
    if operation == "get_chat_history":
        return await client.get_chat_history(BUSINESS, chat_id(fake))
    if operation == "get_chat_message":
        return await client.get_chat_message(BUSINESS, chat_id(fake), first_message(fake))
    order_id = fake.market.chats(BUSINESS)[0].order_id
    return await client.create_chat(BUSINESS, order_id=order_id)


@pytest.mark.parametrize(("operation", "body", "path"), NOT_FITTING)
async def test_an_answer_that_does_not_fit_is_raised_after_one_request(
    fake: FakeServer,
    make_client: Callable[..., ChatsClient],
    operation: str,
    body: bytes,
    path: str,
) -> None:
    client = make_client(max_retries=5)
    fake.faults.add("body", operations=[operation], body=body)  # every time, were it asked
    with pytest.raises(ResponseDecodeError) as info:
        await call(client, fake, operation)
    assert len(fake.journal.entries(operation)) == 1  # not retried: no quota spent in vain
    error = info.value
    assert error.path == path and " - at `$" in str(error)  # msgspec's own words
    assert isinstance(error, TransportError)  # as unreadable answers always were
    assert error.method == operation and error.business_id == BUSINESS
    assert "not retried" in str(error)
    assert client.stats.retries == 0


async def test_a_2xx_that_is_not_json_is_retried_as_a_failure(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    """Not JSON at all: a proxy's error page, say, which the next attempt may not meet."""
    client = make_client(max_retries=2)
    fake.faults.add("invalid_json", operations=["get_chat"], times=1)
    assert (await client.get_chat(BUSINESS, chat_id(fake))).chat_id == chat_id(fake)
    assert [e.status for e in fake.journal.entries("get_chat")] == [200, 200]
    fake.faults.add("invalid_json", operations=["get_chat"])  # every time: retries run out
    with pytest.raises(ResponseDecodeError, match="not JSON") as info:
        await client.get_chat(BUSINESS, chat_id(fake))
    assert info.value.path is None
    assert isinstance(info.value.__cause__, msgspec.DecodeError)
    assert len(fake.journal.entries("get_chat")) == 2 + 3  # 1 + max_retries


async def test_a_page_walk_that_meets_an_answer_it_cannot_read_stops_with_its_token(
    fake: FakeServer, client: ChatsClient
) -> None:
    chat = fake.market.chats(BUSINESS)[0]
    pages = client.iter_chat_history(BUSINESS, chat.chat_id, limit=100).pages()
    first = await pages.__anext__()
    assert first.paging and first.paging.next_page_token
    answer(fake, "get_chat_history", history("2026-13-01T00:00:00Z"))
    with pytest.raises(ResponseDecodeError) as info:
        await pages.__anext__()
    assert info.value.page_token == first.paging.next_page_token
    assert info.value.path == "$.result.messages[0].createdAt"
    assert len(fake.journal.entries("get_chat_history")) == 2
