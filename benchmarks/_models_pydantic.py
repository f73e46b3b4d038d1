"""Pydantic v2 models of the chat answers, as one would write them by hand."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Customer(Model):
    name: str | None = None
    public_id: str | None = None


class FullContext(Model):
    type: str
    customer: Customer | None = None
    campaign_id: int | None = None
    order_id: int | None = None
    return_id: int | None = None


class Payload(Model):
    name: str
    url: str
    size: int


class Message(Model):
    message_id: int
    created_at: dt.datetime
    sender: str
    message: str | None = None
    payload: list[Payload] | None = None


class Paging(Model):
    next_page_token: str | None = None


class Chat(Model):
    chat_id: int
    order_id: int | None = None
    context: FullContext
    type: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


class Chats(Model):
    chats: list[Chat]
    paging: Paging | None = None


class History(Model):
    order_id: int | None = None
    context: FullContext
    messages: list[Message]
    paging: Paging | None = None


class ChatsEnvelope(Model):
    status: str
    result: Chats


class HistoryEnvelope(Model):
    status: str
    result: History
