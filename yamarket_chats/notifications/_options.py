"""The receiver's settings, written once and checked once.

:class:`NotificationReceiver` and :func:`add_notification_route` take the same
keyword options. They are the fields of :class:`ReceiverOptions`, and both
callables take their signature from it (:func:`takes_options`), so the list
is written in one place and cannot drift between the two.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Concatenate, Final, ParamSpec, cast

from .._validate import positive_id, seconds
from ..errors import InvalidRequestError
from ._events import MAX_BODY_BYTES, Notification
from ._guards import AllowHook, check_secret
from ._seen import SeenStore

__all__ = [
    "DEFAULT_MAX_PENDING",
    "Callback",
    "ReceiverOptions",
    "business_set",
    "options_signature",
    "takes_options",
]

#: Callbacks allowed to run at once before new events are answered 500.
DEFAULT_MAX_PENDING: Final = 256
_TEXT_LIMIT: Final = 100  # SendNotificationResponse: name, version 1..100 characters

Callback = Callable[[Notification], Awaitable[object]]


@dataclasses.dataclass(frozen=True)
class ReceiverOptions:
    """A :class:`NotificationReceiver`'s options, each checked when this is made.

    The fields are the receiver's arguments (its docstring says what each
    does); an invalid one is an :class:`~yamarket_chats.InvalidRequestError`
    naming it. ``business_ids`` is kept as a ``frozenset``, timeouts as floats.
    """

    callback: Callback
    _: dataclasses.KW_ONLY
    name: str
    version: str
    secret: str | None = dataclasses.field(default=None, repr=False)
    secret_header: str | None = None
    allow: AllowHook | None = None
    business_ids: Iterable[int] | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    max_pending: int = DEFAULT_MAX_PENDING
    callback_timeout: float | None = None
    seen: SeenStore | None = None
    reject_duplicates: bool = False
    seen_timeout: float = 5.0

    #: ``secret`` as bytes, for constant-time compares (``None``: no secret).
    secret_key: bytes | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.callback):
            raise InvalidRequestError("callback must be an async callable taking the event")
        if self.allow is not None and not callable(self.allow):
            raise InvalidRequestError("allow must be a callable taking the source address")
        timeout = self.callback_timeout
        checked = {
            "name": _text("name", self.name),
            "version": _text("version", self.version),
            "secret_key": check_secret(self.secret),
            "secret_header": _header(self.secret_header),
            "business_ids": business_set("business_ids", self.business_ids),
            "max_body_bytes": _count("max_body_bytes", self.max_body_bytes, 1024),
            "max_pending": _count("max_pending", self.max_pending, 1),
            "callback_timeout": None if timeout is None else seconds("callback_timeout", timeout),
            "seen_timeout": seconds("seen_timeout", self.seen_timeout),
        }
        for field, value in checked.items():
            object.__setattr__(self, field, value)  # frozen: set once, here


def _header(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise InvalidRequestError("secret_header must be a header name")


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= _TEXT_LIMIT:
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise InvalidRequestError(
            f"{field} must be a str of 1..{_TEXT_LIMIT} characters, got {got}"
        )
    return value


def _count(field: str, value: object, minimum: int) -> int:
    """An int64 >= ``minimum`` (the client's id rule, plus a floor of its own)."""
    number = positive_id(field, value)
    if number < minimum:
        raise InvalidRequestError(f"{field} must be an integer >= {minimum}, got {number}")
    return number


def business_set(field: str, ids: Iterable[int] | None) -> frozenset[int] | None:
    """Validate a set of business ids (each an int64 >= 1, at least one)."""
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)):
        raise InvalidRequestError(f"{field} must be a collection of ints, got a string")
    result = frozenset(positive_id(field, value) for value in ids)
    if not result:
        raise InvalidRequestError(f"{field} must name at least one business id")
    return result


_P = ParamSpec("_P")


def options_signature(
    options: Callable[..., object], func: Callable[..., object]
) -> inspect.Signature:
    """``func``'s own parameters (not ``*args, **kwargs``), then those of ``options``."""
    own = inspect.signature(func)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    first = [p for p in own.parameters.values() if p.kind not in variadic]
    fields = inspect.signature(options).parameters.values()
    return own.replace(parameters=[*first, *fields])


def takes_options(
    options: Callable[_P, ReceiverOptions],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Any, _P], None]]:
    """Give a method (``__init__``) the parameters of ``options`` after ``self``.

    For type checkers and :func:`inspect.signature`; the method itself takes
    ``*args, **kwargs`` and passes them to ``options``.
    """

    def give(method: Callable[..., None]) -> Callable[Concatenate[Any, _P], None]:
        method.__signature__ = options_signature(options, method)  # type: ignore[attr-defined]
        return cast("Callable[Concatenate[Any, _P], None]", method)

    return give
