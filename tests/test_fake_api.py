"""The fake's endpoints over real HTTP: auth, validation, data, pagination, sends."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fake_helpers import BUSINESS, Api, connect, error_message
from yamarket_chats.testing import FakeMarketConfig, FakeServer

OTHER = 2002
MSK_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00$")


@pytest.fixture
def yamarket_fake_config() -> FakeMarketConfig:
    return FakeMarketConfig(
        businesses=(BUSINESS, OTHER),
        chats_per_business=12,
        messages_per_chat=230,
        api_keys={"key-all": None, "key-other": frozenset({OTHER})},
        oauth_tokens={"token-all": None},
        limits_enabled=False,
        orders=(777,),
        returns=(888,),
    )


@pytest.fixture
async def api(yamarket_fake: FakeServer) -> AsyncIterator[Api]:
    async with connect(yamarket_fake) as api:
        yield api


def chat_id_of(api: Api, index: int = 0, business: int = BUSINESS) -> int:
    return api.server.market.chats(business)[index].chat_id


# -- auth -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Api-Key": "key-all"}, 200),
        ({"Authorization": "Bearer token-all"}, 200),
        ({"Api-Key": "wrong"}, 403),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Api-Key": "key-other"}, 403),  # a business the key may not access
    ],
)
async def test_auth(api: Api, headers: dict[str, str], status: int) -> None:
    got, body, _ = await api.call(
        "GET", "/chat", params={"chatId": chat_id_of(api)}, headers=headers
    )
    assert got == status
    if status != 200:
        assert body["status"] == "ERROR"
        assert body["errors"][0]["code"] == {401: "UNAUTHORIZED", 403: "FORBIDDEN"}[status]


async def test_key_limited_to_business_may_access_it(api: Api) -> None:
    chat_id = chat_id_of(api, business=OTHER)
    status, _, _ = await api.call(
        "GET", "/chat", business=OTHER, params={"chatId": chat_id}, headers={"Api-Key": "key-other"}
    )
    assert status == 200


# -- validation and 404 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params", "json", "field"),
    [
        ("GET", "/chat", {}, None, "chatId"),
        ("GET", "/chat", {"chatId": "0"}, None, "chatId"),
        ("GET", "/chat", {"chatId": "abc"}, None, "chatId"),
        ("GET", "/chat", {"chatId": "-5"}, None, "chatId"),
        ("GET", "/chats/message", {"chatId": "CHAT"}, None, "messageId"),
        ("GET", "/chats/message", {"chatId": "CHAT", "messageId": "x"}, None, "messageId"),
        ("POST", "/chats", {"limit": "21"}, {}, "limit"),
        ("POST", "/chats", {"limit": "0"}, {}, "limit"),
        ("POST", "/chats", {}, {"statuses": []}, "statuses"),
        ("POST", "/chats", {}, {"statuses": ["NOPE"]}, "statuses"),
        ("POST", "/chats", {}, {"contexts": [{"type": "DIRECT", "id": 1}]}, "contexts"),
        ("POST", "/chats", {}, {"contexts": [{"type": "ORDER", "id": 0}]}, "contexts"),
        ("POST", "/chats", {}, {"orderIds": "1"}, "orderIds"),
        ("POST", "/chats", {}, [], "object"),
        ("POST", "/chats", {"pageToken": "garbage!"}, {}, "pageToken"),
        ("POST", "/chats/history", {"chatId": "CHAT", "limit": "101"}, {}, "limit"),
        ("POST", "/chats/history", {"chatId": "CHAT"}, {"messageIdFrom": 0}, "messageIdFrom"),
        ("POST", "/chats/history", {"chatId": "CHAT", "pageToken": "AAAA"}, {}, "pageToken"),
        ("POST", "/chats/message", {"chatId": "CHAT"}, {}, "message"),
        ("POST", "/chats/message", {"chatId": "CHAT"}, {"message": ""}, "message"),
        ("POST", "/chats/message", {"chatId": "CHAT"}, {"message": "x" * 4097}, "message"),
        ("POST", "/chats/new", {}, {}, "context"),
        ("POST", "/chats/new", {}, {"context": {"type": "ORDER"}}, "id"),
        ("POST", "/chats/new", {}, {"orderId": "12"}, "orderId"),
    ],
)
async def test_validation_names_the_field(
    api: Api, method: str, path: str, params: dict[str, str], json: Any, field: str
) -> None:
    params = {k: str(chat_id_of(api)) if v == "CHAT" else v for k, v in params.items()}
    status, body, _ = await api.call(method, path, params=params, json=json)
    assert status == 400, body
    assert body["errors"][0]["code"] == "BAD_REQUEST"
    assert field in error_message(body)


async def test_invalid_business_id(api: Api) -> None:
    for business in ("0", "abc"):
        status, body, _ = await api.call("POST", "/chats", business=business, json={})  # type: ignore[arg-type]
        assert status == 400
        assert "businessId" in error_message(body)


async def test_malformed_json(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/chats", data=b"{not json", headers={"Api-Key": "key-all"}
    )
    assert status == 400
    assert body["status"] == "ERROR"


async def test_message_of_4096_chars_is_accepted(api: Api) -> None:
    chat_id = chat_id_of(api)
    await api.ok("POST", "/chats/message", params={"chatId": chat_id}, json={"message": "я" * 4096})


async def test_not_found(api: Api) -> None:
    foreign = chat_id_of(api, business=OTHER)
    for chat_id in (999_999_999, foreign):
        status, body, _ = await api.call("GET", "/chat", params={"chatId": chat_id})
        assert status == 404
        assert body["errors"][0]["code"] == "NOT_FOUND"
    chat_id = chat_id_of(api)
    status, _, _ = await api.call(
        "GET", "/chats/message", params={"chatId": chat_id, "messageId": 1}
    )
    assert status == 404
    status, _, _ = await api.call("POST", "/chats/history", params={"chatId": foreign}, json={})
    assert status == 404


# -- data -------------------------------------------------------------------------------


async def test_chats_are_varied_and_well_formed(api: Api) -> None:
    chats: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 20}
    while True:
        result = await api.ok("POST", "/chats", params=params, json={})
        chats += result["chats"]
        if "nextPageToken" not in result["paging"]:
            break
        params["pageToken"] = result["paging"]["nextPageToken"]
    ids = [c["chatId"] for c in chats]
    assert ids == sorted(ids) and len(ids) == 12
    assert {c["status"] for c in chats} == {
        "NEW",
        "WAITING_FOR_CUSTOMER",
        "WAITING_FOR_PARTNER",
        "WAITING_FOR_ARBITER",
        "WAITING_FOR_MARKET",
        "FINISHED",
    }
    assert {c["type"] for c in chats} == {"CHAT", "ARBITRAGE"}
    assert {c["context"]["type"] for c in chats} == {"ORDER", "RETURN", "DIRECT"}
    for chat in chats:
        assert MSK_TIME.match(chat["createdAt"]) and MSK_TIME.match(chat["updatedAt"])
        context = chat["context"]
        assert context["customer"]["name"] and context["customer"]["publicId"]
        if context["type"] == "DIRECT":
            assert set(context) == {"type", "customer"}
        else:
            assert context["orderId"] >= 1 and context["campaignId"] >= 1
            assert ("returnId" in context) == (context["type"] == "RETURN")
    assert await api.ok("GET", "/chat", params={"chatId": ids[3]}) == chats[3]


async def test_messages_mix_senders_and_payloads(api: Api) -> None:
    messages = await api.history(chat_id_of(api))
    assert {m["sender"] for m in messages} == {"PARTNER", "CUSTOMER", "MARKET", "SUPPORT"}
    with_files = [m for m in messages if "payload" in m]
    assert with_files and all("message" not in m for m in with_files)
    assert all(MSK_TIME.match(m["createdAt"]) for m in messages)
    one = messages[7]
    got = await api.ok(
        "GET", "/chats/message", params={"chatId": chat_id_of(api), "messageId": one["messageId"]}
    )
    assert got == one


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ({"statuses": ["FINISHED"]}, lambda c: c["status"] == "FINISHED"),
        ({"types": ["ARBITRAGE"]}, lambda c: c["type"] == "ARBITRAGE"),
        ({"contextTypes": ["RETURN", "DIRECT"]}, lambda c: c["context"]["type"] != "ORDER"),
        (
            {"contextTypes": ["ORDER"], "statuses": ["NEW", "FINISHED"]},
            lambda c: c["context"]["type"] == "ORDER" and c["status"] in ("NEW", "FINISHED"),
        ),
    ],
)
async def test_get_chats_filters(api: Api, body: dict[str, Any], check: Any) -> None:
    result = await api.ok("POST", "/chats", params={"limit": 20}, json=body)
    everything = (await api.ok("POST", "/chats", params={"limit": 20}, json={}))["chats"]
    assert result["chats"] == [c for c in everything if check(c)]
    assert result["chats"]


async def test_get_chats_by_order_and_context(api: Api) -> None:
    chats = api.server.market.chats(BUSINESS)
    order = next(c for c in chats if c.context_type == "ORDER")
    ret = next(c for c in chats if c.context_type == "RETURN")
    result = await api.ok("POST", "/chats", json={"orderIds": [order.order_id]})
    assert [c["chatId"] for c in result["chats"]] == [order.chat_id]
    contexts = [{"type": "ORDER", "id": order.order_id}, {"type": "RETURN", "id": ret.return_id}]
    result = await api.ok("POST", "/chats", json={"contexts": contexts})
    assert [c["chatId"] for c in result["chats"]] == [order.chat_id, ret.chat_id]


# -- pagination --------------------------------------------------------------------------


async def test_history_walk_returns_every_message_once_in_order(api: Api) -> None:
    chat_id = chat_id_of(api)
    messages = await api.history(chat_id, params={"limit": 100})
    ids = [m["messageId"] for m in messages]
    assert len(ids) == 230 and ids == sorted(set(ids))
    expected = [m.message_id for m in api.server.market.messages(BUSINESS, chat_id)]
    assert ids == expected
    # Default page size is 50.
    first = await api.ok("POST", "/chats/history", params={"chatId": chat_id}, json={})
    assert len(first["messages"]) == 50


async def test_history_walk_is_stable_while_messages_arrive(api: Api) -> None:
    market = api.server.market
    chat_id = chat_id_of(api)
    params: dict[str, Any] = {"chatId": chat_id, "limit": 40}
    seen: list[int] = []
    added: list[int] = []
    while True:
        result = await api.ok("POST", "/chats/history", params=params, json={})
        seen += [m["messageId"] for m in result["messages"]]
        if len(added) < 3:
            added.append(market.add_message(BUSINESS, chat_id, f"new {len(added)}"))
        token = result["paging"].get("nextPageToken")
        if not token:
            break
        params["pageToken"] = token
    assert seen == sorted(set(seen))
    assert seen[-3:] == added
    assert len(seen) == 233


async def test_message_id_from(api: Api) -> None:
    chat_id = chat_id_of(api)
    all_ids = [m.message_id for m in api.server.market.messages(BUSINESS, chat_id)]
    start = all_ids[100]
    messages = await api.history(chat_id, json={"messageIdFrom": start}, params={"limit": 30})
    assert [m["messageId"] for m in messages] == all_ids[100:]
    # A token binds the filter it was made with.
    result = await api.ok(
        "POST", "/chats/history", params={"chatId": chat_id}, json={"messageIdFrom": start}
    )
    token = result["paging"]["nextPageToken"]
    status, body, _ = await api.call(
        "POST", "/chats/history", params={"chatId": chat_id, "pageToken": token}, json={}
    )
    assert status == 400 and "pageToken" in error_message(body)


async def test_tokens_are_opaque_and_bound_to_their_chat(api: Api) -> None:
    first, second = chat_id_of(api, 0), chat_id_of(api, 1)
    result = await api.ok("POST", "/chats/history", params={"chatId": first}, json={})
    token = result["paging"]["nextPageToken"]
    assert not token.isdigit()
    status, _, _ = await api.call(
        "POST", "/chats/history", params={"chatId": second, "pageToken": token}, json={}
    )
    assert status == 400
    chats = await api.ok("POST", "/chats", params={"limit": 2}, json={"types": ["CHAT"]})
    status, _, _ = await api.call(
        "POST", "/chats", params={"pageToken": chats["paging"]["nextPageToken"]}, json={}
    )
    assert status == 400


async def test_chat_walk_stable_while_chats_arrive(api: Api) -> None:
    params: dict[str, Any] = {"limit": 5}
    seen: list[int] = []
    new_id = None
    while True:
        result = await api.ok("POST", "/chats", params=params, json={})
        seen += [c["chatId"] for c in result["chats"]]
        if new_id is None:
            new_id = api.server.market.add_chat(BUSINESS, messages=3)
        token = result["paging"].get("nextPageToken")
        if not token:
            break
        params["pageToken"] = token
    assert seen == sorted(set(seen)) and seen[-1] == new_id and len(seen) == 13


# -- writes -----------------------------------------------------------------------------


async def test_create_chat_is_idempotent_per_context(api: Api) -> None:
    market = api.server.market
    existing = next(c for c in market.chats(BUSINESS) if c.context_type == "RETURN")
    result = await api.ok(
        "POST", "/chats/new", json={"context": {"type": "RETURN", "id": existing.return_id}}
    )
    assert result == {"chatId": existing.chat_id}
    first = await api.ok("POST", "/chats/new", json={"context": {"type": "ORDER", "id": 777}})
    again = await api.ok("POST", "/chats/new", json={"orderId": 777})
    assert first == again and first["chatId"] > existing.chat_id
    chat = await api.ok("GET", "/chat", params={"chatId": first["chatId"]})
    assert chat["context"]["orderId"] == 777 and chat["status"] == "NEW"
    returned = await api.ok("POST", "/chats/new", json={"context": {"type": "RETURN", "id": 888}})
    chat = await api.ok("GET", "/chat", params={"chatId": returned["chatId"]})
    assert chat["context"]["type"] == "RETURN" and chat["context"]["returnId"] == 888


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"context": {"type": "ORDER", "id": 778}}, "Order 778 not found"),
        ({"orderId": 778}, "Order 778 not found"),
        ({"context": {"type": "RETURN", "id": 777}}, "Return 777 not found"),  # an order's id
        ({"context": {"type": "ORDER", "id": 888}}, "Order 888 not found"),  # a return's id
        ({"orderId": 777, "context": {"type": "RETURN", "id": 889}}, "Return 889 not found"),
    ],
)
async def test_create_chat_about_an_order_or_return_the_business_lacks_is_404(
    api: Api, body: dict[str, Any], message: str
) -> None:
    chats = len(api.server.market.chats(BUSINESS))
    status, answer, _ = await api.call("POST", "/chats/new", json=body)
    assert status == 404
    assert answer == {"status": "ERROR", "errors": [{"code": "NOT_FOUND", "message": message}]}
    assert len(api.server.market.chats(BUSINESS)) == chats


async def test_create_chat_finds_orders_per_business(api: Api) -> None:
    market = api.server.market
    theirs = next(c for c in market.chats(OTHER) if c.context_type == "ORDER")
    assert not any(c.order_id == theirs.order_id for c in market.chats(BUSINESS))
    status, _, _ = await api.call("POST", "/chats/new", json={"orderId": theirs.order_id})
    assert status == 404  # another business's order
    result = await api.ok("POST", "/chats/new", json={"orderId": theirs.order_id}, business=OTHER)
    assert result == {"chatId": theirs.chat_id}
    # The order of a return chat is the business's order too: a chat about it may start.
    returned = next(c for c in market.chats(BUSINESS) if c.context_type == "RETURN")
    assert returned.order_id is not None and market.holds(BUSINESS, "ORDER", returned.order_id)
    await api.ok("POST", "/chats/new", json={"orderId": returned.order_id})


async def test_send_message_appends_to_history(api: Api) -> None:
    chat_id = chat_id_of(api, 2)
    before = await api.ok("GET", "/chat", params={"chatId": chat_id})
    status, body, _ = await api.call(
        "POST", "/chats/message", params={"chatId": chat_id}, json={"message": "Привет!"}
    )
    assert (status, body) == (200, {"status": "OK"})
    messages = await api.history(chat_id, params={"limit": 100})
    assert len(messages) == 231
    assert messages[-1]["sender"] == "PARTNER" and messages[-1]["message"] == "Привет!"
    after = await api.ok("GET", "/chat", params={"chatId": chat_id})
    assert after["updatedAt"] == messages[-1]["createdAt"] != before["updatedAt"]


async def _send_file(api: Api, chat_id: int, content: bytes | None, name: str = "a.txt") -> Any:
    form = aiohttp.FormData()
    if content is not None:
        form.add_field("file", io.BytesIO(content), filename=name, content_type="text/plain")
    else:
        form.add_field("other", "x")
    return await api.call("POST", "/chats/file/send", params={"chatId": chat_id}, data=form)


async def test_send_file_and_fetch_it(api: Api) -> None:
    chat_id = chat_id_of(api, 3)
    status, body, _ = await _send_file(api, chat_id, b"hello file", "отчёт 1.txt")
    assert (status, body) == (200, {"status": "OK"})
    last = list(api.server.market.messages(BUSINESS, chat_id))[-1]
    got = await api.ok(
        "GET", "/chats/message", params={"chatId": chat_id, "messageId": last.message_id}
    )
    assert got["sender"] == "PARTNER"
    [payload] = got["payload"]
    assert payload["name"] == "отчёт 1.txt" and payload["size"] == 10
    assert payload["url"].startswith(api.server.url)
    async with api.session.get(payload["url"]) as response:
        assert response.status == 200
        assert await response.read() == b"hello file"


async def test_seeded_file_urls_are_fetchable(api: Api) -> None:
    messages = await api.history(chat_id_of(api), params={"limit": 100})
    payload = next(m["payload"][0] for m in messages if "payload" in m)
    async with api.session.get(payload["url"]) as response:
        assert response.status == 200
        assert len(await response.read()) == payload["size"]
    async with api.session.get(api.server.url + "/files/1/2/nothing.jpg") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "required"), (b"x" * (5 * 1024 * 1024 + 1), "5 MiB")],
)
async def test_send_file_validation(api: Api, content: bytes | None, words: str) -> None:
    status, body, _ = await _send_file(api, chat_id_of(api), content)
    assert status == 400
    message = error_message(body)
    assert "file" in message and words in message


async def test_empty_file_is_accepted_as_the_spec_sets_no_minimum(api: Api) -> None:
    chat_id = chat_id_of(api)
    status, body, _ = await _send_file(api, chat_id, b"", "empty.txt")
    assert (status, body) == (200, {"status": "OK"})
    last = list(api.server.market.messages(BUSINESS, chat_id))[-1]
    assert last.payload is not None and last.payload[0].size == 0


async def test_file_of_exactly_5_mib_is_accepted(api: Api) -> None:
    status, _, _ = await _send_file(api, chat_id_of(api), b"x" * (5 * 1024 * 1024))
    assert status == 200


# -- paths and connections -------------------------------------------------------------------


async def test_legacy_paths(api: Api) -> None:
    chat_id = chat_id_of(api)
    legacy = "/businesses/{b}"
    result = await api.ok("POST", "/chats", prefix=legacy, json={}, params={"limit": 1})
    assert len(result["chats"]) == 1
    assert (await api.ok("GET", "/chat", prefix=legacy, params={"chatId": chat_id}))[
        "chatId"
    ] == chat_id
    history = await api.ok(
        "POST", "/chats/history", prefix=legacy, params={"chatId": chat_id}, json={}
    )
    assert len(history["messages"]) == 50
    await api.ok(
        "POST", "/chats/message", prefix=legacy, params={"chatId": chat_id}, json={"message": "hi"}
    )
    assert api.server.journal.entries("send_message_to_chat")[0].path.startswith("/businesses/")


async def test_connection_close_by_default(api: Api) -> None:
    _, _, response = await api.call("POST", "/chats", json={})
    assert response.headers["Connection"] == "close"
    status, _, response = await api.call("GET", "/chat", params={"chatId": 1})
    assert status == 404 and response.headers["Connection"] == "close"


async def test_keep_alive_when_enabled() -> None:
    from yamarket_chats.testing import run_fake_server

    config = FakeMarketConfig(keep_alive=True)
    async with run_fake_server(config) as server, connect(server) as api:
        for _ in range(3):
            _, _, response = await api.call("POST", "/chats", json={})
            assert response.headers.get("Connection", "keep-alive").lower() == "keep-alive"
        connector = api.session.connector
        assert connector is not None
        # One pooled connection was reused for all three requests.
        assert sum(len(v) for v in connector._conns.values()) == 1


# -- journal ------------------------------------------------------------------------------------


async def test_journal_records_requests_without_secrets(api: Api) -> None:
    chat_id = chat_id_of(api)
    journal = api.server.journal
    journal.clear()
    await api.ok("POST", "/chats/history", params={"chatId": chat_id, "limit": 5}, json={})
    await api.call(
        "GET", "/chat", params={"chatId": chat_id}, headers={"Authorization": "Bearer token-all"}
    )
    await api.call("GET", "/chat", params={"chatId": chat_id}, headers={"Api-Key": "wrong-secret"})
    await _send_file(api, chat_id, b"abc", "x.bin")
    entries = list(journal)
    assert [e.operation for e in entries] == [
        "get_chat_history",
        "get_chat",
        "get_chat",
        "send_file_to_chat",
    ]
    history = entries[0]
    assert history.method == "POST" and history.business_id == BUSINESS
    assert history.query == {"chatId": str(chat_id), "limit": "5"}
    assert history.body == {} and history.status == 200 and history.fault is None
    assert history.finished is not None and history.finished >= history.started
    assert entries[2].status == 403
    assert entries[3].body == {
        "file": {"filename": "x.bin", "size": 3, "content_type": "text/plain"}
    }
    assert journal.entries("get_chat", status=200) == [entries[1]]
    dump = repr(entries)
    for secret in ("key-all", "token-all", "wrong-secret", "Bearer"):
        assert secret not in dump


async def test_a_very_long_query_gets_the_json_error_envelope(fake: FakeServer) -> None:
    query = "&".join(f"chatId=x{i}" for i in range(3000))  # a request line of ~40 KB
    async with aiohttp.ClientSession() as http:
        url = f"{fake.url}/v2/businesses/1001/chat?{query}"
        async with http.get(url, headers={"Api-Key": fake.api_key}) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"
            assert "chatId" in (await resp.json())["errors"][0]["message"]
