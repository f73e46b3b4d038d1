"""Each fault kind of the fake, and how faults are scripted."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fake_helpers import BUSINESS, Api, connect
from yamarket_chats.testing import FakeMarketConfig, FakeServer


@pytest.fixture
def yamarket_fake_config() -> FakeMarketConfig:
    return FakeMarketConfig(chats_per_business=6, messages_per_chat=40)


@pytest.fixture
async def api(yamarket_fake: FakeServer) -> AsyncIterator[Api]:
    async with connect(yamarket_fake) as api:
        yield api


def first_chat(api: Api) -> int:
    return api.server.market.chats(BUSINESS)[0].chat_id


async def send(api: Api) -> tuple[int, Any]:
    status, body, _ = await api.call(
        "POST", "/chats/message", params={"chatId": first_chat(api)}, json={"message": "hi"}
    )
    return status, body


def count(api: Api) -> int:
    return api.server.market.message_count(BUSINESS, first_chat(api))


async def test_latency(api: Api) -> None:
    api.server.faults.add("latency", delay=0.2, times=1)
    started = time.monotonic()
    await api.ok("POST", "/chats", json={})
    assert time.monotonic() - started >= 0.2
    [entry] = api.server.journal.entries("get_chats")
    assert entry.fault == "latency" and entry.finished is not None
    assert entry.finished - entry.started >= 0.2


@pytest.mark.parametrize(("kind", "status"), [("status_500", 500), ("status_503", 503)])
async def test_status_faults_do_not_act(api: Api, kind: str, status: int) -> None:
    api.server.faults.add(kind, times=1)
    got, body = await send(api)
    assert got == status and body["status"] == "ERROR"
    assert body["errors"][0]["code"] in ("INTERNAL_ERROR", "SERVICE_UNAVAILABLE")
    assert count(api) == 40


async def test_status_500_after_acts(api: Api) -> None:
    api.server.faults.add("status_500_after", times=1)
    assert (await send(api))[0] == 500
    assert count(api) == 41


@pytest.mark.parametrize(("kind", "acted"), [("drop", False), ("drop_after", True)])
async def test_drop(api: Api, kind: str, acted: bool) -> None:
    api.server.faults.add(kind, times=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(api)
    assert count(api) == 40 + acted
    [entry] = api.server.journal.entries("send_message_to_chat")
    assert entry.status is None and entry.fault == kind


async def test_truncate(api: Api) -> None:
    api.server.faults.add("truncate", times=1)
    url = f"{api.server.url}/v2/businesses/{BUSINESS}/chats/history"
    headers = {"Api-Key": api.server.api_key}
    params = {"chatId": first_chat(api)}
    async with api.session.post(url, params=params, json={}, headers=headers) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_invalid_json(api: Api) -> None:
    api.server.faults.add("invalid_json", times=1, operations=["send_message_to_chat"])
    status, body, response = await api.call(
        "POST", "/chats/message", params={"chatId": first_chat(api)}, json={"message": "hi"}
    )
    assert status == 200 and body is None
    assert response.content_type == "application/json"
    assert count(api) == 41


async def test_body_acts_then_answers_the_given_body(api: Api) -> None:
    body = b'{"status":"OK","result":{"chatId":1,"createdAt":"2026-06-30T23:59:60Z"}}'
    api.server.faults.add("body", times=1, operations=["send_message_to_chat"], body=body)
    status, got, response = await api.call(
        "POST", "/chats/message", params={"chatId": first_chat(api)}, json={"message": "hi"}
    )
    assert status == 200 and got == json.loads(body)
    assert response.content_type == "application/json"
    assert count(api) == 41  # acted: the message was sent
    [entry] = api.server.journal.entries("send_message_to_chat")
    assert entry.status == 200 and entry.fault == "body"
    assert (await send(api))[0] == 200 and count(api) == 42  # once only


async def test_body_only_with_its_kind(api: Api) -> None:
    with pytest.raises(ValueError, match="body= goes with the fault kind 'body'"):
        api.server.faults.add("body")
    with pytest.raises(ValueError, match="body= goes with the fault kind 'body'"):
        api.server.faults.add("invalid_json", body=b"{}")
    assert len(api.server.faults) == 0


async def test_body_is_not_served_for_an_error(api: Api) -> None:
    api.server.faults.add("body", operations=["get_chat"], body=b"{}")
    status, body, _ = await api.call("GET", "/chat", params={"chatId": 1})
    assert status == 404 and body["errors"][0]["code"] == "NOT_FOUND"


def all_objects(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value] + [o for v in value.values() for o in all_objects(v)]
    if isinstance(value, list):
        return [o for v in value for o in all_objects(v)]
    return []


async def test_extra_fields(api: Api) -> None:
    api.server.faults.add("extra_fields")
    result = await api.ok("POST", "/chats", json={})
    originals = [o for o in all_objects(result) if "fakeExtraField" in o]
    # Every original object (result, chats, contexts, customers, paging) got extras.
    assert len(originals) == 1 + 6 * 3 + 1
    assert all(o["fakeExtraObject"]["nested"]["level"] == 2 for o in originals)
    history = await api.ok("POST", "/chats/history", params={"chatId": first_chat(api)}, json={})
    assert all("fakeExtraField" in m for m in history["messages"])


async def test_unknown_enum(api: Api) -> None:
    api.server.faults.add("unknown_enum")
    chat = await api.ok("GET", "/chat", params={"chatId": first_chat(api)})
    assert chat["type"] == "GROUP_CHAT" and chat["status"] == "WAITING_FOR_ROBOT"
    assert chat["context"]["type"] == "SUPPORT_TICKET"
    history = await api.ok("POST", "/chats/history", params={"chatId": first_chat(api)}, json={})
    assert {m["sender"] for m in history["messages"]} == {"BOT"}


async def test_times_operations_probability_and_clear(api: Api) -> None:
    faults = api.server.faults
    faults.add("status_503", times=2, operations=["get_chat"])
    assert (await api.call("POST", "/chats", json={}))[0] == 200
    statuses = [
        (await api.call("GET", "/chat", params={"chatId": first_chat(api)}))[0] for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    faults.add("status_500", probability=0.5)
    statuses = [(await api.call("POST", "/chats", json={}))[0] for _ in range(40)]
    assert 5 < statuses.count(500) < 35 and statuses.count(200) == 40 - statuses.count(500)
    faults.clear()
    assert (await api.call("POST", "/chats", json={}))[0] == 200
    with pytest.raises(ValueError, match="unknown fault kind"):
        faults.add("explode")
