"""What the receiver sends back, in the shapes of Market's notification spec.

A success is ``{"version", "name", "time"}`` (``SendNotificationResponse``), a
refusal ``{"error": {"type", "message"}}``; both are ``application/json``.
"""

from __future__ import annotations

import datetime as dt
from typing import Final, NamedTuple

import msgspec

from ._events import Notification

__all__ = ["CONTENT_TYPE", "NotificationAnswer", "error_body", "ok_body"]

#: The ``Content-Type`` of every answer, and the only one accepted in requests.
CONTENT_TYPE: Final = "application/json"


class NotificationAnswer(NamedTuple):
    """What to send back: ``status``, JSON ``body``, and the event if it is new."""

    status: int
    body: bytes
    #: The decoded event when it was accepted and handed to the callback
    #: (``None`` for a ping, a duplicate or a refusal).
    event: Notification | None


class _Ok(msgspec.Struct):
    version: str
    name: str
    time: dt.datetime


class _ErrorDetail(msgspec.Struct):
    type: str
    message: str


class _Error(msgspec.Struct):
    error: _ErrorDetail


_encode = msgspec.json.Encoder().encode


def ok_body(name: str, version: str) -> bytes:
    """The success body: the integration's version and name, and the time now."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return _encode(_Ok(version=version, name=name, time=now))


def error_body(kind: str, message: str) -> bytes:
    """An error body: ``{"error": {"type": kind, "message": message}}``."""
    return _encode(_Error(error=_ErrorDetail(type=kind, message=message)))
