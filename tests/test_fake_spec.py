"""The fake is exactly as strict as the spec: each case schemathesis found, pinned down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from yamarket_chats.testing import FakeMarketConfig, run_fake_server

from .fake_helpers import BUSINESS, Api, connect, error_message


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    config = FakeMarketConfig(chats_per_business=5, messages_per_chat=20, limits_enabled=False)
    async with run_fake_server(config) as server, connect(server) as api:
        yield api


def _chat(api: Api, context_type: str = "ORDER") -> Any:
    return next(c for c in api.server.market.chats(BUSINESS) if c.context_type == context_type)


def _query(api: Api, path: str) -> dict[str, int]:
    return {} if path in ("/chats", "/chats/new") else {"chatId": _chat(api).chat_id}


@pytest.mark.parametrize("path", ["/chats", "/chats/history", "/chats/new", "/chats/message"])
@pytest.mark.parametrize("data", [None, b"", b" \r\n"])
async def test_a_missing_required_body_is_refused(api: Api, path: str, data: bytes | None) -> None:
    status, body, _ = await api.call("POST", path, params=_query(api, path), data=data)
    assert status == 400, body
    assert "body is required" in error_message(body)
    assert len(api.server.market.chats(BUSINESS)) == 5


@pytest.mark.parametrize(
    ("path", "json", "field"),
    [
        ("/chats/new", {"orderId": None}, "orderId"),
        ("/chats/new", {"context": None}, "context"),
        ("/chats/new", {"orderId": None, "context": {"type": "ORDER", "id": 5}}, "orderId"),
        ("/chats/history", {"messageIdFrom": None}, "messageIdFrom"),
        ("/chats/message", {"message": None}, "message"),
    ],
)
async def test_null_is_refused_where_the_spec_says_not_nullable(
    api: Api, path: str, json: Any, field: str
) -> None:
    status, body, _ = await api.call("POST", path, params=_query(api, path), json=json)
    assert status == 400, body
    assert f"got `null` - at `$.{field}`" in error_message(body)


async def test_null_filters_are_accepted_as_the_spec_makes_them_nullable(api: Api) -> None:
    filters = dict.fromkeys(("orderIds", "contexts", "contextTypes", "types", "statuses"))
    result = await api.ok("POST", "/chats", json=filters)
    assert len(result["chats"]) == 5


@pytest.mark.parametrize("order_id", [0, -1, -(2**63)])
async def test_create_chat_accepts_any_int64_order_id_and_finds_no_order_below_1(
    api: Api, order_id: int
) -> None:
    status, body, _ = await api.call("POST", "/chats/new", json={"orderId": order_id})
    assert status == 404, body
    assert body["errors"][0]["code"] == "NOT_FOUND"
    assert str(order_id) in error_message(body)
    assert len(api.server.market.chats(BUSINESS)) == 5


@pytest.mark.parametrize("kind", ["ORDER", "RETURN"])
async def test_create_chat_about_an_order_or_return_that_does_not_exist_is_404(
    api: Api, kind: str
) -> None:
    # The spec's 404 ("the resource was not found"): a valid id the business does not have.
    body = {"context": {"type": kind, "id": 999_999_999}}
    status, answer, _ = await api.call("POST", "/chats/new", json=body)
    assert status == 404, answer
    assert answer["errors"] == [
        {"code": "NOT_FOUND", "message": f"{kind.capitalize()} 999999999 not found"}
    ]
    assert len(api.server.market.chats(BUSINESS)) == 5


@pytest.mark.parametrize("order_id", [2**63, -(2**63) - 1, 1.5, "7"])
async def test_create_chat_refuses_an_order_id_outside_int64(api: Api, order_id: Any) -> None:
    status, body, _ = await api.call("POST", "/chats/new", json={"orderId": order_id})
    assert status == 400, body
    assert "orderId" in error_message(body)


async def test_create_chat_accepts_order_id_and_context_together(api: Api) -> None:
    chat = _chat(api, "RETURN")
    context = {"type": "RETURN", "id": chat.return_id}
    result = await api.ok("POST", "/chats/new", json={"orderId": 0, "context": context})
    assert result == {"chatId": chat.chat_id}
    other = _chat(api)
    result = await api.ok("POST", "/chats/new", json={"orderId": chat.order_id, "context": context})
    assert result == {"chatId": chat.chat_id} != {"chatId": other.chat_id}


async def test_get_chats_order_ids_have_no_minimum(api: Api) -> None:
    result = await api.ok("POST", "/chats", json={"orderIds": [0, -3]})
    assert result["chats"] == []


@pytest.mark.parametrize(
    ("field", "items"),
    [
        ("orderIds", [1, 1]),
        ("statuses", ["NEW", "NEW"]),
        ("contextTypes", ["ORDER", "DIRECT", "ORDER"]),
        ("types", ["CHAT", "CHAT"]),
        ("contexts", [{"type": "ORDER", "id": 3}, {"id": 3, "type": "ORDER"}]),
    ],
)
async def test_repeated_items_of_unique_arrays_are_refused(
    api: Api, field: str, items: list[Any]
) -> None:
    status, body, _ = await api.call("POST", "/chats", json={field: items})
    assert status == 400, body
    message = error_message(body)
    assert field in message and "unique" in message


async def test_items_that_differ_in_json_are_unique(api: Api) -> None:
    chat = _chat(api)
    contexts = [
        {"type": "ORDER", "id": chat.order_id},
        {"type": "ORDER", "id": chat.order_id, "x": 1},
    ]
    result = await api.ok("POST", "/chats", json={"contexts": contexts, "orderIds": [1, 2]})
    assert result["chats"] == []
    result = await api.ok("POST", "/chats", json={"contexts": contexts[:1]})
    assert [c["chatId"] for c in result["chats"]] == [chat.chat_id]


@pytest.mark.parametrize(
    "value", ["\uff11\uff12", "+5", " 5", "5.0", "1e3", "0", "9223372036854775808"]
)
async def test_query_ids_are_ascii_decimal_int64(api: Api, value: str) -> None:
    status, body, _ = await api.call("GET", "/chat", params={"chatId": value})
    assert status == 400, body
    assert "chatId" in error_message(body)


async def test_query_ids_may_have_leading_zeros(api: Api) -> None:
    chat_id = _chat(api).chat_id
    result = await api.ok("GET", "/chat", params={"chatId": f"000{chat_id}"})
    assert result["chatId"] == chat_id


async def test_a_huge_business_id_with_bad_auth_is_a_clean_403(api: Api) -> None:
    business = "9" * 5000
    status, body, _ = await api.call(
        "POST",
        "/chats",
        business=business,
        json={},
        headers={"Api-Key": "wrong"},  # type: ignore[arg-type]
    )
    assert status == 403, body
