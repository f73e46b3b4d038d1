"""Exceptions raised by the library. None of them ever holds a key or token."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .models import ApiErrorDetail

__all__ = [
    "CLIENT_QUOTA_WAIT",
    "ApiError",
    "BadRequestError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "PaginationError",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "SinkLockedError",
    "TransportError",
    "UnauthorizedError",
    "YandexMarketError",
]


#: The error code of a `RateLimitError` raised by the client before any request.
CLIENT_QUOTA_WAIT = "CLIENT_QUOTA_WAIT"


class YandexMarketError(Exception):
    """Base of everything the library raises.

    `page_token` is set when the error ended a page walk: pass it back as
    ``page_token=`` to resume from the page that failed.
    """

    page_token: str | None = None


class InvalidRequestError(YandexMarketError, ValueError):
    """An argument was refused before any request was sent."""


class PaginationError(YandexMarketError):
    """The server returned a page token twice in one walk (a paging loop)."""


class SinkLockedError(YandexMarketError):
    """Another sync holds the sink (a file lock or the database's own lock).

    Two syncs writing one sink would race on its checkpoints; the second one
    waits up to its ``lock_timeout`` and then raises this, naming the sink.
    """


class TransportError(YandexMarketError):
    """The request failed on the network, timed out, or got an unreadable answer.

    The underlying exception is chained as ``__cause__``.
    """

    def __init__(self, message: str, *, method: str, business_id: int) -> None:
        super().__init__(f"{method} (business {business_id}): {message}")
        self.method = method
        self.business_id = business_id


class ResponseDecodeError(TransportError):
    """A 2xx answer whose body cannot be decoded: not JSON, or JSON that does not fit the spec.

    JSON that does not fit is raised at once, never retried: the same request
    gets the same answer, and every attempt would spend quota. A body that is
    not JSON (a proxy's error page) is retried like a 5xx, and raised when
    retries run out. ``path`` names the field that did not fit, in msgspec's
    words (such as ``$.result.chats[0].createdAt``), or is ``None`` when the
    body is not JSON at all; the decoding error is chained as ``__cause__``.
    The message holds msgspec's description and path, never the body itself
    (it may hold a buyer's words).
    """

    def __init__(
        self, message: str, *, method: str, business_id: int, path: str | None = None
    ) -> None:
        super().__init__(message, method=method, business_id=business_id)
        self.path = path


class ApiError(YandexMarketError):
    """The API answered with an error status."""

    def __init__(
        self,
        status: int,
        errors: Sequence[ApiErrorDetail],
        *,
        method: str,
        business_id: int,
    ) -> None:
        self.status = status
        self.errors = list(errors)
        self.method = method
        self.business_id = business_id
        details = "; ".join(f"{e.code}: {e.message}" if e.message else e.code for e in self.errors)
        super().__init__(f"{method} (business {business_id}) -> HTTP {status}: {details or '-'}")


class BadRequestError(ApiError):
    """400: the API refused the request's data."""


class UnauthorizedError(ApiError):
    """401: no credentials reached the API."""


class ForbiddenError(ApiError):
    """403: the key or token is wrong, or may not access this business."""


class NotFoundError(ApiError):
    """404: no such chat or message."""


class RateLimitError(ApiError):
    """420: a quota or the parallel-request cap was hit and retries or time ran out.

    ``retry_at`` is when the quota is known to be free again (an aware UTC
    ``datetime``, e.g. for a ``Retry-After`` header), or ``None`` when unknown
    (the parallel-request cap). Raised by the client itself, before any request,
    when waiting for quota or a slot would pass the call's ``max_wait``: then
    ``status`` is 420 and ``errors`` holds one ``ApiErrorDetail`` with code
    :data:`CLIENT_QUOTA_WAIT`.
    """

    def __init__(
        self,
        status: int,
        errors: Sequence[ApiErrorDetail],
        *,
        method: str,
        business_id: int,
        retry_at: dt.datetime | None = None,
    ) -> None:
        super().__init__(status, errors, method=method, business_id=business_id)
        self.retry_at = retry_at


class ServerError(ApiError):
    """5xx: the API failed on its side."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    420: RateLimitError,
    429: RateLimitError,
}


def error_for_status(
    status: int, errors: Sequence[ApiErrorDetail], *, method: str, business_id: int
) -> ApiError:
    """Build the `ApiError` subclass that matches an HTTP status."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, errors, method=method, business_id=business_id)
