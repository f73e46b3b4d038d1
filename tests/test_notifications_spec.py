"""Notifications to the letter of Market's notification spec (tests/spec/notification-api).

The event classes are checked field by field against the spec's schemas; the
spec's own edge cases (PING without ``time``, ``chatId`` 0, a string
``messageId``, the answer's 1..100 characters) are exercised over loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
from typing import Any

import msgspec
import pytest
import yaml
from aiohttp import web

from yamarket_chats import ChatsClient, InvalidRequestError
from yamarket_chats.notifications import (
    ChatArbitrageFinishedNotification,
    ChatArbitrageStartedNotification,
    ChatCreatedNotification,
    ChatMessageSentNotification,
    NotificationFetcher,
    NotificationFormatError,
    NotificationReceiver,
    PingNotification,
    add_notification_route,
    decode_notification,
    fetch_chat,
    fetch_message,
)
from yamarket_chats.testing import FakeServer

from .conftest import BUSINESS
from .test_notifications import NAME, VERSION, Inbox, serve

ROOT = pathlib.Path(__file__).parent.parent
SPEC = pathlib.Path(__file__).parent / "spec" / "notification-api" / "openapi"
SCHEMAS = SPEC / "components" / "schemas"

CLASSES: dict[str, type[Any]] = {
    "PingNotificationDTO": PingNotification,
    "ChatCreatedNotificationDTO": ChatCreatedNotification,
    "ChatMessageSentNotificationDTO": ChatMessageSentNotification,
    "ChatArbitrageStartedNotificationDTO": ChatArbitrageStartedNotification,
    "ChatArbitrageFinishedNotificationDTO": ChatArbitrageFinishedNotification,
}


def schema(name: str) -> dict[str, Any]:
    """A schema of the spec with its property `$ref`s resolved one level."""
    data: dict[str, Any] = yaml.safe_load((SCHEMAS / f"{name}.yaml").read_text("utf-8"))
    for prop, value in data.get("properties", {}).items():
        if "$ref" in value:
            data["properties"][prop] = yaml.safe_load(
                (SCHEMAS / value["$ref"].removeprefix("./")).read_text("utf-8")
            )
    return data


def example(prop: dict[str, Any]) -> Any:
    if prop["type"] == "integer":
        return prop.get("minimum", -(2**63))
    if prop.get("format") == "date-time":
        return "2017-11-21T00:00:00.213Z"
    assert prop["type"] == "string"
    return "" if "enum" not in prop else prop["enum"][0]


@pytest.mark.parametrize("dto", sorted(CLASSES))
def test_event_classes_follow_the_spec_schemas(dto: str) -> None:
    cls = CLASSES[dto]
    spec = schema(dto)
    tag = cls.__struct_config__.tag
    assert f"`notificationType` = `{tag}`" in spec["description"]
    props = {k: v for k, v in spec["properties"].items() if k != "notificationType"}
    required = set(spec.get("required", [])) - {"notificationType"}
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    assert set(fields) == set(props), "field names differ from the spec"
    assert {n for n, f in fields.items() if f.required} == required

    # The smallest values the spec allows decode (no minimum where it has none) ...
    body = {"notificationType": tag, **{k: example(v) for k, v in props.items()}}
    event = decode_notification(json.dumps(body))
    assert isinstance(event, cls)
    # ... and each optional field may be left out.
    for name in set(props) - required:
        trimmed = {k: v for k, v in body.items() if k != name}
        assert isinstance(decode_notification(json.dumps(trimmed)), cls)
    for name, prop in props.items():
        # Below a minimum, beyond int64, or the wrong JSON type is refused.
        wrong: list[Any] = []
        if prop["type"] == "integer":
            wrong = [str(body[name]), 2**63, 1.5]
            if "minimum" in prop:
                wrong.append(prop["minimum"] - 1)
        else:
            wrong = [12, None] if prop.get("format") != "date-time" else [12, "2017-11-21"]
        for value in wrong:
            with pytest.raises(NotificationFormatError):
                decode_notification(json.dumps({**body, name: value}))


# -- PING ------------------------------------------------------------------------


async def test_ping_without_time_is_answered_200(fake: FakeServer) -> None:
    inbox = Inbox()
    app = web.Application()
    receiver = add_notification_route(app, "/notification", inbox, name=NAME, version=VERSION)
    async with serve(app) as base:
        notifier = fake.notify_to(base + "/notification")
        bare = await notifier.ping(with_time=False)
        timed = await notifier.ping()
    assert bare.payload == {"notificationType": "PING"}
    assert (bare.status, timed.status) == (200, 200), bare.body
    answer = json.loads(bare.body)
    assert (answer["name"], answer["version"]) == (NAME, VERSION)
    assert receiver.pending == 0 and inbox.events == []
    assert decode_notification(b'{"notificationType": "PING"}') == PingNotification(time=None)


# -- the answer's name and version -----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "got"),
    [
        ("name", "", "0 characters"),
        ("name", "n" * 101, "101 characters"),
        ("version", "", "0 characters"),
        ("version", "v" * 101, "101 characters"),
        ("version", 1, "int"),
    ],
)
async def test_name_and_version_must_be_1_to_100_characters(
    field: str, value: Any, got: str
) -> None:
    options: dict[str, Any] = {"name": NAME, "version": VERSION, field: value}
    with pytest.raises(InvalidRequestError) as info:
        NotificationReceiver(Inbox(), **options)
    assert str(info.value) == f"{field} must be a str of 1..100 characters, got {got}"
    with pytest.raises(InvalidRequestError):
        add_notification_route(web.Application(), "/notification", Inbox(), **options)
    # The limits themselves are fine, and the answer carries them.
    receiver = NotificationReceiver(Inbox(), name="n" * 100, version="v")
    assert msgspec.json.decode(receiver.ok())["name"] == "n" * 100


# -- ids as the spec types them ------------------------------------------------------------


async def test_chat_id_zero_is_accepted_and_fetch_says_why_it_cannot(
    fake: FakeServer, client: ChatsClient
) -> None:
    inbox = Inbox()
    receiver = NotificationReceiver(inbox, name=NAME, version=VERSION)
    body = {
        "notificationType": "CHAT_CREATED",
        "chatId": 0,
        "businessId": BUSINESS,
        "createdAt": "2017-11-21T00:00:00.213Z",
    }
    answer = await receiver.handle(json.dumps(body))
    assert answer.status == 200, answer.body
    (event,) = await inbox.wait_for(1)
    assert isinstance(event, ChatCreatedNotification) and event.chat_id == 0
    with pytest.raises(InvalidRequestError, match=r"chatId 0 of CHAT_CREATED is below 1"):
        await fetch_chat(client, event)
    negative = await receiver.handle(json.dumps({**body, "chatId": -7}))
    assert negative.status == 200
    await receiver.aclose()
    assert len(fake.journal) == 0


@pytest.mark.parametrize("raw", ["abc", "12a", "", "0", "-5", " 12", "1_000", "١٢", "9" * 20])
async def test_a_message_id_that_is_no_int_is_kept_raw_and_not_fetched(
    raw: str, fake: FakeServer, client: ChatsClient
) -> None:
    inbox = Inbox()
    receiver = NotificationReceiver(inbox, name=NAME, version=VERSION)
    chat = fake.market.chats(BUSINESS)[0]
    body = {
        "notificationType": "CHAT_MESSAGE_SENT",
        "chatId": chat.chat_id,
        "messageId": raw,
        "businessId": BUSINESS,
        "sentAt": "2025-03-01T12:00:00+03:00",
    }
    answer = await receiver.handle(json.dumps(body))
    assert answer.status == 200, answer.body
    (event,) = await inbox.wait_for(1)
    assert isinstance(event, ChatMessageSentNotification)
    assert (event.raw_message_id, event.message_id) == (raw, None)
    pattern = re.escape(f"messageId {raw[:40]!r} of CHAT_MESSAGE_SENT is not an integer")
    with pytest.raises(InvalidRequestError, match=pattern):
        await fetch_message(client, event)
    fetcher = NotificationFetcher(client, business_ids=[BUSINESS])
    with pytest.raises(InvalidRequestError, match=pattern):
        await fetcher.fetch_message(event)
    assert fetcher.fetched[BUSINESS] == 0  # refused before a token was taken
    await receiver.aclose()
    assert len(fake.journal) == 0


def test_numeric_message_id_string_becomes_an_int() -> None:
    event = decode_notification(
        b'{"notificationType": "CHAT_MESSAGE_SENT", "chatId": 5,'
        b' "messageId": "9223372036854775807", "businessId": 1, "sentAt": "2025-03-01T12:00:00Z"}'
    )
    assert isinstance(event, ChatMessageSentNotification)
    assert event.message_id == 2**63 - 1
    assert event.sent_at == dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone.utc)


# -- the URL ------------------------------------------------------------------------------


def test_the_spec_has_one_path_and_the_docs_say_the_same() -> None:
    entry = yaml.safe_load((SPEC / "openapi.yaml").read_text("utf-8"))
    assert list(entry["paths"]) == ["/notification"]
    assert "servers" not in entry  # relative to the URL registered in the cabinet
    phrase = "`<your registered URL>/notification`"
    for doc in ("README.md", "docs/notifications.md"):
        text = (ROOT / doc).read_text("utf-8")
        assert phrase in text, doc
        assert "the notification URL you register" not in text, doc  # the old wording


@pytest.mark.parametrize(
    ("kind", "field", "extra"),
    [
        ("CHAT_MESSAGE_SENT", "sentAt", {"messageId": "7"}),  # a string in the spec
        ("CHAT_CREATED", "createdAt", {}),
        ("CHAT_ARBITRAGE_FINISHED", "finishedAt", {}),
    ],
)
def test_a_leap_second_and_a_time_without_seconds_decode_in_every_event(
    kind: str, field: str, extra: dict[str, object]
) -> None:
    """As in the API's answers (models._decode_answer): each event's own timestamp."""
    from yamarket_chats.notifications import decode_notification

    base = {"notificationType": kind, "businessId": BUSINESS, "chatId": 5, **extra}
    leap = decode_notification(json.dumps({**base, field: "2026-12-31T23:59:60+03:00"}))
    short = decode_notification(json.dumps({**base, field: "2026-12-07T10:15+03:00"}))
    name = {"sentAt": "sent_at", "createdAt": "created_at", "finishedAt": "finished_at"}[field]
    assert getattr(leap, name).isoformat() == "2026-12-31T23:59:59.999999+03:00"
    assert getattr(short, name).isoformat() == "2026-12-07T10:15:00+03:00"
