"""The fake's answers conform to the official OpenAPI spec (checked by schemathesis).

Schemathesis is synchronous, so the fake runs in a background thread with its
own event loop. Generated ids are mapped onto seeded data so that most cases
reach the handlers' success paths instead of stopping at 403/404.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from yamarket_chats.testing import OPERATIONS as OPERATION_NAMES
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

SPEC = Path(__file__).parent / "spec" / "chats-openapi.yaml"
BUSINESS = 1001
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_path(SPEC)
OPERATIONS = {op.ok().label: op.ok() for op in schema.get_all_operations()}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    """A fake (limits off) served from a background thread."""
    config = FakeMarketConfig(
        chats_per_business=8, messages_per_chat=120, seed=3, limits_enabled=False
    )
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        async with run_fake_server(config) as server:
            box["server"] = server
            ready.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield box["server"]
    box["stop"]()
    thread.join(10)
    loop.close()


def _valid_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def pin_to_seeded_data(server: FakeServer, case: Any) -> Any:
    """Point valid generated ids at seeded chats and messages (invalid ones stay)."""
    if _valid_id(case.path_parameters.get("businessId")):
        case.path_parameters["businessId"] = BUSINESS
    query = case.query if case.query is not None else {}
    chats = server.market.chats(BUSINESS)
    if _valid_id(query.get("chatId")):
        chat = chats[query["chatId"] % len(chats)]
        query["chatId"] = chat.chat_id
        if _valid_id(query.get("messageId")):
            index = query["messageId"] % chat.message_count
            query["messageId"] = server.market.message_at(chat, index).message_id
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_conforms_to_spec(fake: FakeServer, label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]
    strategy = operation.as_strategy(generation_mode=mode)
    headers = {"Api-Key": fake.api_key}

    @given(data=st.data())
    @settings(
        max_examples=30,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(data: st.DataObject) -> None:
        case = pin_to_seeded_data(fake, data.draw(strategy))
        response = case.call(base_url=fake.url, headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    check()


def test_cases_reached_success_paths(fake: FakeServer) -> None:
    """The mapping onto seeded data works: every operation answered 200 at least once."""
    succeeded = {e.operation for e in fake.journal.entries(status=200)}
    assert succeeded == set(OPERATION_NAMES)
