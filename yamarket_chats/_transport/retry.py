"""What an attempt came to, and what the call does next: README's "Retries" table as code.

Two pure functions, no I/O, no clock and no randomness of their own (the
request loop passes the time and the jitter in), so every row of the table
is tested without a server (tests/test_retry.py):

- `classify` names the outcome of one attempt from what came back (a status
  and a body, or an exception) and builds the error the call raises if it
  gives up;
- `decide` turns an outcome, the tries spent so far, the policy and the
  deadline into done, raise, retry after N seconds, or requeue (again through
  the limiter, which holds the request until the server's window resets).

The budgets: failures (5xx, no answer, a connection never opened) are
retried up to ``max_retries`` times; 420s, of either kind, up to twice that;
a stale pooled connection is no failure and is tried again at once. A request
that may have reached the server is retried only when the operation is
idempotent. A 2xx whose body is not JSON (a proxy's page) is a failure like a
5xx; one whose JSON does not fit the spec is never retried: the same request
would get the same answer, each time spending quota.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import msgspec

from ..errors import (
    ApiError,
    ResponseDecodeError,
    TransportError,
    YandexMarketError,
    error_for_status,
)
from ..models import _decode_answer, _ErrorEnvelope

__all__ = [
    "Action",
    "Answer",
    "Decision",
    "Kind",
    "Outcome",
    "Policy",
    "Tries",
    "classify",
    "decide",
]

_error_decoder: Final = msgspec.json.Decoder(_ErrorEnvelope)
# Where a msgspec error is: "... - at `$.result.chats[0].createdAt`"; and the
# field missing there, if that is the error: "Object missing required field `chatId`".
_AT_PATH: Final = re.compile(r" - at `(\$[^`]*)`$")
_MISSING: Final = re.compile(r"Object missing required field `([^`]+)`")


@dataclass(frozen=True, slots=True)
class Policy:
    """How long one call may take and how it retries (a client's or a view's)."""

    timeout: float
    max_retries: int
    max_wait: float | None
    backoff: float
    max_backoff: float

    @property
    def rate_limit_retries(self) -> int:
        """420s retried per call, of either kind: twice ``max_retries``."""
        return 2 * self.max_retries


class Kind:
    """What one attempt came to: the strings logs and hooks show (``CallInfo.outcome``).

    Plain string constants, not an enum: an enum member costs ~170 ns to look
    up on Python 3.11, and the loop looks one up on every request.
    """

    OK: Final = "ok"
    REFUSED: Final = "refused"  #: a 4xx other than 420, or an ERROR envelope: raised as it is
    QUOTA_SPENT: Final = "420, quota spent"  #: the server's window is spent until -Until
    PARALLEL_420: Final = "420, quota left (parallel cap)"  #: or a 420 without a count
    SERVER_ERROR: Final = "5xx"
    UNREADABLE: Final = "unreadable answer"  #: a 2xx whose body is not JSON (a proxy's page?)
    UNDECODABLE: Final = "answer off the spec"  #: JSON that does not fit the spec: never retried
    STALE: Final = "stale pooled connection"  #: closed by the server before the request reached it
    NOT_CONNECTED: Final = "connection failed"  #: the connection never opened: nothing was sent
    NO_ANSWER: Final = "no answer"  #: a timeout or a dropped connection: it may have been acted on
    CUT_SHORT: Final = "cut short by max_wait"  #: a timeout shortened to what max_wait left
    BAD_URL: Final = "invalid URL"  #: a bad base_url does not get better


@dataclass(slots=True)  # (not frozen: a frozen init costs 6x, once per attempt)
class Answer:
    """What came back from one attempt: an answer, or the exception instead of one."""

    status: int | None
    raw: bytes
    headers: Mapping[str, str] | None
    error: BaseException | None
    stale: bool  #: the request was written to a pooled connection the server had closed
    cut_short: bool  #: the request's timeout was shortened to the call's deadline
    reset_in: float  #: from the limiter: seconds until a spent server window resets, else 0
    elapsed: float  #: seconds from sending to the answer (or the failure)


@dataclass(slots=True)  # (not frozen: a frozen init costs 6x, once per attempt)
class Outcome:
    """An attempt, classified: its kind, its result, or the error to raise if the call stops."""

    kind: str  #: a `Kind`
    reason: str  #: for logs and ``on_retry``: e.g. ``"HTTP 503"``, ``"ServerDisconnectedError"``
    result: Any = None
    error: YandexMarketError | None = None
    cause: BaseException | None = None  #: chained to `error` when it is raised
    reset_in: float = 0.0


@dataclass(frozen=True, slots=True)
class Tries:
    """Retries spent so far by one call, per budget."""

    failures: int = 0
    limited: int = 0  #: 420s of either kind


NO_TRIES: Final = Tries()  #: where every call starts


class Action(enum.Enum):
    """What the call does after an attempt."""

    DONE = "done"  #: return the outcome's result
    RAISE = "raise"  #: raise the outcome's error
    RETRY = "retry"  #: send again after ``delay`` seconds (0: at once)
    REQUEUE = "requeue"  #: send again through the limiter, which waits for -Until


@dataclass(frozen=True, slots=True)
class Decision:
    """`decide`'s answer; `note` is the second half of a WARNING line, when one is due."""

    action: Action
    delay: float = 0.0
    tries: Tries = Tries()
    note: str | None = None


_SENT: Final = Outcome(Kind.OK, Kind.OK)  # a send the server took
_DONE: Final = Decision(Action.DONE)
_RAISE: Final = Decision(Action.RAISE)
# Retried with backoff, and from which budget, by kind: (reads, sends).
_FAILURES: Final = {
    Kind.SERVER_ERROR: (True, False),
    Kind.UNREADABLE: (True, False),  # (a send's body is never decoded)
    Kind.NO_ANSWER: (True, False),
    Kind.NOT_CONNECTED: (True, True),
}


def decide(
    outcome: Outcome,
    tries: Tries,
    policy: Policy,
    *,
    idempotent: bool,
    deadline: float | None,
    now: float,
    jitter: float,
) -> Decision:
    """What the call does next.

    `now` is on the deadline's clock; `jitter`, in [0, 1), spreads backoffs.
    """
    kind = outcome.kind
    if kind == Kind.OK:
        return _DONE
    if kind == Kind.STALE:
        return Decision(Action.RETRY, 0.0, tries)  # not a failure: nothing reached the server
    if kind == Kind.CUT_SHORT:
        return Decision(Action.RAISE, note=f"no time left in max_wait={policy.max_wait:g} s")
    if kind == Kind.QUOTA_SPENT:
        reset_in = outcome.reset_in
        if tries.limited >= policy.rate_limit_retries or (
            deadline is not None and now + reset_in > deadline
        ):
            return Decision(Action.RAISE, note=f"free again in {reset_in:.1f} s; giving up")
        limited = Tries(tries.failures, tries.limited + 1)
        return Decision(Action.REQUEUE, 0.0, limited, f"waiting {reset_in:.1f} s for -Until")
    if kind == Kind.PARALLEL_420:
        if tries.limited >= policy.rate_limit_retries:
            return Decision(Action.RAISE, note="retries used up; giving up")
        limited = Tries(tries.failures, tries.limited + 1)
        return _backoff(limited, limited.limited, policy, deadline, now, jitter)
    retried = _FAILURES.get(kind)
    if retried is None or not retried[not idempotent] or tries.failures >= policy.max_retries:
        return _RAISE
    failed = Tries(tries.failures + 1, tries.limited)
    return _backoff(failed, failed.failures, policy, deadline, now, jitter)


def _backoff(
    tries: Tries, attempt: int, policy: Policy, deadline: float | None, now: float, jitter: float
) -> Decision:
    """Retry number `attempt` after a jittered, doubling delay, unless past the deadline."""
    delay = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
    delay = delay / 2 + jitter * delay / 2
    if deadline is not None and now + delay >= deadline:
        return Decision(Action.RAISE, note=f"no time left in max_wait={policy.max_wait:g} s")
    return Decision(Action.RETRY, delay, tries, f"retry in {delay:.2f} s")


def classify(
    answer: Answer,
    *,
    method: str,
    business_id: int,
    decoder: msgspec.json.Decoder[Any] | None,
    max_wait: float | None,
) -> Outcome:
    """Name what an attempt came to; `decoder` reads a 2xx envelope (``None``: a send)."""
    exc = answer.error
    if exc is not None:
        return _failed(answer, exc, method, business_id, max_wait)
    status = answer.status
    assert status is not None
    if status < 300:
        return _answered(answer.raw, status, method, business_id, decoder)
    error = _api_error(status, answer.raw, method, business_id)
    if status == 420:
        if answer.reset_in > 0:
            return Outcome(
                Kind.QUOTA_SPENT, Kind.QUOTA_SPENT, error=error, reset_in=answer.reset_in
            )
        return Outcome(Kind.PARALLEL_420, Kind.PARALLEL_420, error=error)
    if status >= 500:
        return Outcome(Kind.SERVER_ERROR, f"HTTP {status}", error=error)
    return Outcome(Kind.REFUSED, f"HTTP {status}", error=error)


def _failed(
    answer: Answer, exc: BaseException, method: str, business_id: int, max_wait: float | None
) -> Outcome:
    """An attempt that got no answer."""
    name = type(exc).__name__
    if answer.stale:
        return Outcome(Kind.STALE, Kind.STALE, cause=exc)
    if answer.cut_short and isinstance(exc, asyncio.TimeoutError):
        message = f"max_wait of {max_wait:g} s ran out during the request"
        error = TransportError(message, method=method, business_id=business_id)
        return Outcome(Kind.CUT_SHORT, "timed out", error=error, cause=exc)
    error = TransportError(_describe(exc), method=method, business_id=business_id)
    if isinstance(exc, aiohttp.InvalidURL):
        kind = Kind.BAD_URL
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = Kind.NOT_CONNECTED  # only a connection that never opened certainly sent nothing
    else:
        kind = Kind.NO_ANSWER
    return Outcome(kind, name, error=error, cause=exc)


def _answered(
    raw: bytes,
    status: int,
    method: str,
    business_id: int,
    decoder: msgspec.json.Decoder[Any] | None,
) -> Outcome:
    """A 2xx: its result, or the refusal its envelope may still carry."""
    if decoder is None:  # a send: an empty envelope, which may still say ERROR
        try:
            refusal = _error_decoder.decode(raw) if raw else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            refusal = None  # no envelope to read: the status says it all
        if refusal is None or refusal.status != "ERROR":
            return _SENT
        errors = refusal.errors
    else:
        try:
            envelope = _decode_answer(decoder, raw)
        except msgspec.ValidationError as exc:  # JSON, not as the spec says
            return _unreadable(str(exc), method, business_id, exc)
        except msgspec.DecodeError as exc:  # not JSON: a page of a proxy between us?
            return _unreadable(str(exc), method, business_id, exc, retried=True)
        if envelope.status != "ERROR":
            if envelope.result is None:  # an OK envelope without the result it exists for
                missing = "Object missing required field `result` - at `$`"
                return _unreadable(missing, method, business_id, None)
            return Outcome(Kind.OK, Kind.OK, envelope.result)
        errors = envelope.errors
    error = error_for_status(status, errors or [], method=method, business_id=business_id)
    return Outcome(Kind.REFUSED, f"HTTP {status}", error=error)


def _unreadable(
    what: str, method: str, business_id: int, cause: BaseException | None, retried: bool = False
) -> Outcome:
    """A 2xx that cannot be decoded: `what` is msgspec's description, naming the field.

    JSON that does not fit the spec is never retried: the same request would
    get the same answer, each time spending quota. A body that is not JSON at
    all (`retried`) may be a proxy's error page, gone on the next attempt.
    """
    if retried:
        message = f"the answer is not JSON: {what}"
    else:
        message = (
            "the answer does not fit the spec, so it is not retried (the same request "
            f"would get the same answer): {what}"
        )
    error = ResponseDecodeError(
        message, method=method, business_id=business_id, path=None if retried else _field(what)
    )
    kind = Kind.UNREADABLE if retried else Kind.UNDECODABLE
    return Outcome(kind, kind, error=error, cause=cause)


def _field(what: str) -> str | None:
    """The path of the field a msgspec error is about (a missing one included), if it names one."""
    at = _AT_PATH.search(what)
    if at is None:
        return None  # not JSON at all: no field to name
    missing = _MISSING.match(what)
    return f"{at.group(1)}.{missing.group(1)}" if missing else at.group(1)


def _api_error(status: int, raw: bytes, method: str, business_id: int) -> ApiError:
    try:
        errors = _error_decoder.decode(raw).errors or []
    except (msgspec.DecodeError, msgspec.ValidationError):
        errors = []
    return error_for_status(status, errors, method=method, business_id=business_id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "request timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
