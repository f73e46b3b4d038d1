"""Exit codes, and the one line a failure prints: what each exception means to a user.

The codes are the command's contract with scripts (cron, CI, shells), so
they live in one place with their help text, which the parser's epilog shows.
"""

from __future__ import annotations

import signal
import sqlite3

from ..errors import (
    ApiError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    ResponseDecodeError,
    SinkLockedError,
    TransportError,
    UnauthorizedError,
    YandexMarketError,
)

EXIT_CODES = """Exit codes: 0 done; 1 an API or storage error; 2 bad arguments; 3 the key or
token was refused (HTTP 401/403); 4 the API is unreachable (network, timeout);
5 rate limits still exhausted after waiting; 6 the sink is in use by another
sync; 130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (what was fetched is
saved); 141 the output pipe was closed (e.g. by ``head``). Failures print one
line on stderr, never the key."""

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_RATE_LIMITED = 0, 1, 2, 3, 4, 5
EXIT_SINK_LOCKED = 6
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130; SIGTERM gives 143
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE


class UsageError(Exception):
    """Arguments that parse but cannot be used (exit code 2)."""


class SinkUnusable(Exception):
    """The sink's file or database cannot be opened (exit code 1); says which."""


def failure(exc: BaseException) -> tuple[int, str]:
    """The exit code and one-line reason of a failure."""
    if isinstance(exc, (UnauthorizedError, ForbiddenError)):
        return EXIT_AUTH, (
            f"authentication failed (HTTP {exc.status}): the API key or token was refused "
            f"or may not access business {exc.business_id}"
        )
    if isinstance(exc, ResponseDecodeError):  # the API answered: not a network failure
        return EXIT_ERROR, f"the API's answer could not be read: {exc}"
    if isinstance(exc, TransportError):
        return EXIT_UNREACHABLE, _unreachable(exc)
    if isinstance(exc, RateLimitError):
        return EXIT_RATE_LIMITED, f"rate limits still exhausted, try later: {exc}"
    if isinstance(exc, SinkLockedError):
        hint = str(exc).replace("pass lock_timeout (seconds)", "pass --lock-timeout SECONDS")
        return EXIT_SINK_LOCKED, f"sink in use by another sync: {hint}"
    if isinstance(exc, (InvalidRequestError, UsageError)):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, (ApiError, YandexMarketError, SinkUnusable)):
        return EXIT_ERROR, str(exc)
    if isinstance(exc, sqlite3.Error):
        return EXIT_ERROR, f"database error: {exc}"
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return EXIT_ERROR, f"{exc.filename}: {exc.strerror}"
    return EXIT_ERROR, f"{type(exc).__name__}: {exc}"


def _unreachable(exc: TransportError) -> str:
    import aiohttp  # loaded by then: a TransportError comes from the client

    if (
        exc.method.startswith("send_")
        and exc.__cause__ is not None
        and not isinstance(exc.__cause__, aiohttp.ClientConnectorError)
    ):
        # The request went out: the server may have acted on it.
        return (
            "the connection failed after the request was sent; the message may have "
            f"been delivered, check the chat before sending again: {exc}"
        )
    return f"cannot reach the API: {exc}"
