"""Minimal msgspec structs for the hand-written msgspec variant.

The same message fields the library gives (the timestamp decoded to a
``datetime``); the rest of a page (context, orderId) is skipped by msgspec.
"""

from __future__ import annotations

import datetime as dt

import msgspec


class Payload(msgspec.Struct, rename="camel", gc=False):
    name: str
    url: str
    size: int


class Message(msgspec.Struct, rename="camel", gc=False):
    message_id: int
    created_at: dt.datetime
    sender: str
    message: str | None = None
    payload: list[Payload] | None = None


class Paging(msgspec.Struct, rename="camel", gc=False):
    next_page_token: str | None = None


class History(msgspec.Struct, gc=False):
    messages: list[Message]
    paging: Paging | None = None


class ChatId(msgspec.Struct, rename="camel", gc=False):
    chat_id: int


class Chats(msgspec.Struct, gc=False):
    chats: list[ChatId]
    paging: Paging | None = None


class HistoryEnvelope(msgspec.Struct, gc=False):
    result: History


class ChatsEnvelope(msgspec.Struct, gc=False):
    result: Chats
