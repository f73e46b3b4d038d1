"""The fake is as strict as the official OpenAPI spec, no more, no less (schemathesis).

This is ``st run --checks all`` in Python: every check schemathesis has, the
examples, coverage and fuzzing phases, positive and negative data, for all
seven operations. Ids are pinned to the fake's seeded data so that requests
reach the handlers instead of stopping at 403/404: ``businessId`` as a
schemathesis ``parameter``; valid ``chatId``, ``messageId`` (`pin_query`) and
``orderId``, ``contexts``, ``messageIdFrom`` (`pin_body`) mapped onto seeded
chats, orders, returns and messages, while invalid ones are sent as generated,
so the negative cases of those parameters reach the handlers too.

The fake's deliberate deviations from the schema (docs/fake.md) are the only
cases excused, each by `deviation`, and each excuse is asserted.

Schemathesis is synchronous, so the fake runs in a background thread with its
own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if sys.version_info < (3, 11):  # schemathesis 4.32 needs 3.11 ([dev] leaves it out on 3.10)
    pytest.skip("schemathesis needs Python 3.11 or later", allow_module_level=True)

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from yamarket_chats.testing import OPERATIONS as OPERATION_NAMES
from yamarket_chats.testing import FakeMarket, FakeMarketConfig, FakeServer, run_fake_server

SPEC = Path(__file__).parent / "spec" / "chats-openapi.yaml"
BUSINESS = 1001
CONFIG = FakeMarketConfig(chats_per_business=8, messages_per_chat=120, seed=3, limits_enabled=False)
# The seeded data is deterministic: read the ids to pin from a twin of the fake's market.
_SEEDED = FakeMarket(CONFIG)
_CHATS = _SEEDED.chats(BUSINESS)
CHAT = _CHATS[0]
ORDER_IDS = [c.order_id for c in _CHATS if c.order_id is not None]
RETURN_IDS = [c.return_id for c in _CHATS if c.return_id is not None]

load_all_checks()

schema = schemathesis.openapi.from_path(SPEC)
schema.config.update(parameters={"businessId": BUSINESS})
schema.config.checks.update(included_check_names=["all"])
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
schema.config.generation.update(modes=list(GenerationMode), deterministic=True)  # both modes


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    """A fake (limits off) served from a background thread."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        async with run_fake_server(CONFIG) as server:
            assert server.market.chats(BUSINESS)[0].chat_id == CHAT.chat_id
            box["server"] = server
            ready.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    with coverage_paused():
        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        assert ready.wait(10)
        yield box["server"]
        box["stop"]()
        thread.join(10)
    loop.close()


@contextlib.contextmanager
def coverage_paused() -> Iterator[None]:
    """No coverage measurement while the fuzzer runs (under ``make test``).

    It sends a few thousand requests through code the rest of the suite
    already measures (tests/test_fake_*.py), and tracing them doubled its CPU
    time: 24 s against 12.5 s. The checks themselves are unchanged.
    """
    try:
        import coverage
    except ImportError:  # pragma: no cover - coverage comes with [dev]
        current = None
    else:
        current = coverage.Coverage.current()
    if current is None:
        yield
        return
    current.stop()
    try:
        yield
    finally:
        current.start()


@pytest.fixture
def reaches_success(fake: FakeServer) -> Iterator[None]:
    """The pinning works: the operation under test answered 200 at least once.

    Hypothesis runs every example of one operation inside one test, so this
    checks each operation on its own, whatever the order or worker.
    """
    seen = len(fake.journal)
    yield
    entries = list(fake.journal)[seen:]
    operations = {e.operation for e in entries}
    assert len(operations) == 1, operations
    assert any(e.status == 200 for e in entries), f"{operations}: no 200"


def _is_id(value: Any) -> bool:
    """A valid id: an int64 of at least 1 (pinning must not make invalid data valid)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**63


def _pin(value: Any, real: list[int], mapping: dict[int, int]) -> Any:
    """A positive generated id mapped onto a real one (the same value always maps alike)."""
    if not _is_id(value):
        return value
    return mapping.setdefault(value, real[len(mapping) % len(real)])


def _query_id(value: Any) -> int | None:
    """A valid id in a query: an int, or its decimal text (the coverage phase sends text)."""
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    return value if _is_id(value) else None


def pin_query(case: Any) -> None:
    """Point a valid ``chatId`` at a seeded chat, a valid ``messageId`` at one of its messages."""
    query = case.query
    chat_id = _query_id((query or {}).get("chatId"))
    if chat_id is None:
        return
    chat = _CHATS[chat_id % len(_CHATS)]
    text = isinstance(query["chatId"], str)
    query["chatId"] = str(chat.chat_id) if text else chat.chat_id
    message_id = _query_id(query.get("messageId"))
    if message_id is not None:
        message = _SEEDED.message_at(chat, message_id % chat.seeded).message_id
        query["messageId"] = str(message) if isinstance(query["messageId"], str) else message


def pin_body(case: Any) -> None:
    """Point valid ids in a JSON body at seeded orders, returns and messages.

    Distinct ids stay distinct (and repeated ones repeated), so ``uniqueItems``
    cases keep their meaning; invalid values are left as generated.
    """
    body = case.body
    if not isinstance(body, dict):
        return
    orders: dict[int, int] = {}
    if "orderId" in body:
        body["orderId"] = _pin(body["orderId"], ORDER_IDS, orders)
    ids = body.get("orderIds")
    if isinstance(ids, list) and len(set(map(repr, ids))) <= len(ORDER_IDS):
        body["orderIds"] = [_pin(i, ORDER_IDS, orders) for i in ids]
    returns: dict[int, int] = {}
    contexts = [body.get("context")]
    if isinstance(body.get("contexts"), list) and len(body["contexts"]) <= len(RETURN_IDS):
        contexts += body["contexts"]
    for context in contexts:
        if isinstance(context, dict) and "id" in context:
            if context.get("type") == "RETURN":
                context["id"] = _pin(context["id"], RETURN_IDS, returns)
            else:
                context["id"] = _pin(context["id"], ORDER_IDS, orders)
    if "messageIdFrom" in body and _is_id(body["messageIdFrom"]):
        chat_id = _query_id((case.query or {}).get("chatId"))
        chat = next((c for c in _CHATS if c.chat_id == chat_id), CHAT)
        body["messageIdFrom"] = chat.first_message_id + body["messageIdFrom"] % chat.seeded


def _is_positive(case: Any) -> bool:
    return bool(case.meta is not None and case.meta.generation.mode.is_positive)


def pin_page_token(case: Any, base_url: str, headers: dict[str, str]) -> None:
    """Swap a generated ``pageToken`` of valid data for one the fake issued.

    The fake refuses tokens it did not issue (a documented deviation); a real
    one for the same request lets the case reach the success path instead.
    """
    if not _is_positive(case) or not case.query or "pageToken" not in case.query:
        return
    del case.query["pageToken"]
    response = case.call(base_url=base_url, headers=headers)
    if response.status_code == 200:
        token = response.json()["result"].get("paging", {}).get("nextPageToken")
        if token is not None:
            case.query["pageToken"] = token


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def _has_control_character(value: Any) -> bool:
    """A control character a header value may not hold (RFC 9110 allows only tab)."""
    return isinstance(value, str) and any(
        (ord(char) < 32 and char != "\t") or ord(char) == 127 for char in value
    )


def deviation(case: Any) -> tuple[str, str] | None:
    """``(reason, words of the 400 message)`` when valid data meets a documented deviation."""
    if not _is_positive(case):
        return None
    body = case.body
    if _has_lone_surrogate(body):
        return "a string holds an unpaired UTF-16 surrogate", "JSON is malformed"
    creates_chat = case.operation.label.endswith("/chats/new") and isinstance(body, dict)
    if creates_chat and "orderId" not in body and "context" not in body:
        return "createChat names neither orderId nor context", "`context` (or `orderId`)"
    return None


def drop_unsendable_fields(case: Any) -> None:
    """Drop extra multipart fields whose names hold control characters.

    Such a name cannot go in a part's ``Content-Disposition`` header (RFC 9110
    forbids control characters but tab in field values), so aiohttp's parser refuses
    the request before the fake sees it: malformed HTTP, not a schema question.
    """
    form = case.body if case.media_type == "multipart/form-data" else None
    if _is_positive(case) and isinstance(form, dict):
        for name in [n for n in form if _has_control_character(n)]:
            del form[name]


def form_sent_a_file(case: Any, response: Any) -> bool:
    """Whether a "negative" multipart case still sent a ``file`` part.

    Serialization often makes negated form data valid (an int becomes the
    text "5"). Schemathesis cannot re-validate a form holding a binary part,
    so this says it: a form with a ``file`` part is valid, whatever else it
    holds, and the fake rightly accepts it.
    """
    sent = response.request.body
    return (
        not _is_positive(case)
        and case.media_type == "multipart/form-data"
        and isinstance(sent, bytes)
        and b'form-data; name="file"' in sent
    )


@schema.parametrize()
@settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_conforms_to_spec(case: Any, fake: FakeServer, reaches_success: None) -> None:
    headers = {"Api-Key": fake.api_key}
    pin_query(case)
    pin_body(case)
    drop_unsendable_fields(case)
    pin_page_token(case, fake.url, headers)
    response = case.call(base_url=fake.url, headers=headers)
    excluded = []
    excused = deviation(case)
    if excused is not None:
        # Valid data the fake refuses on purpose: it must say why, and conform otherwise.
        reason, words = excused
        assert response.status_code == 400, reason
        assert words in response.json()["errors"][0]["message"], reason
        excluded.append(positive_data_acceptance)
    if form_sent_a_file(case, response):
        excluded.append(negative_data_rejection)
    case.validate_response(
        response,
        headers=headers,
        excluded_checks=excluded,
        transport_kwargs={"base_url": fake.url},
    )


def test_every_check_is_on() -> None:
    """``--checks all``: no registered check is left out, for any operation or phase."""
    names = [check.__name__ for check in CHECKS.get_all()]
    assert {"negative_data_rejection", "positive_data_acceptance", "ignored_auth"} <= set(names)
    for operation in schema.get_all_operations():
        for phase in ("examples", "coverage", "fuzzing"):
            config = schema.config.checks_config_for(operation=operation.ok(), phase=phase)
            assert all(config.get_by_name(name=name).enabled for name in names), phase


def test_every_operation_is_tested() -> None:
    """`test_conforms_to_spec` runs once per operation, and the spec has all seven."""
    assert len(list(schema.get_all_operations())) == len(OPERATION_NAMES) == 7
