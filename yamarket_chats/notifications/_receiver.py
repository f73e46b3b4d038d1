"""The receiver: answers Market's notification POSTs and runs a callback per new event.

Guards run cheapest first and each refusal leaves no trace: the secret and the
source address (403), the ``Content-Type`` and the size (400), the JSON and
its nesting (400), the business (403), not shutting down and room for one
more callback (500, so Market delivers again later), and only then the
seen-set and the callback. The answer never waits for the callback; at
shutdown :meth:`NotificationReceiver.aclose` waits for every event accepted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, NamedTuple

import msgspec
from aiohttp import web

from .._validate import positive_id, seconds
from ..errors import InvalidRequestError
from ._events import (
    MAX_BODY_BYTES,
    Notification,
    NotificationFormatError,
    PingNotification,
    UnknownNotification,
    _short,
    business_of,
    decode_notification,
    dedup_key,
)
from ._guards import AllowHook, check_secret, secret_matches
from ._seen import MemorySeenStore, SeenStore

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_MAX_PENDING",
    "Callback",
    "NotificationAnswer",
    "NotificationReceiver",
    "add_notification_route",
]

logger = logging.getLogger("yamarket_chats.notifications")

#: The ``Content-Type`` of every answer, and the only one accepted in requests.
CONTENT_TYPE: Final = "application/json"
#: Callbacks allowed to run at once before new events are answered 500.
DEFAULT_MAX_PENDING: Final = 256
_TEXT_LIMIT: Final = 100  # SendNotificationResponse: name, version 1..100 characters

Callback = Callable[[Notification], Awaitable[object]]


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
# Refusals a flood can cause are logged at most once per this many seconds
# (with how many were not logged), so forgeries cannot flood the logs instead.
_LOG_EVERY: Final = 10.0


class _QuietLog:
    """Logs a warning of one kind at most every ``_LOG_EVERY`` seconds."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._skipped: collections.Counter[str] = collections.Counter()

    def __call__(self, level: int, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < _LOG_EVERY:
            self._skipped[kind] += 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        if skipped:
            message += f" ({skipped} more like it in the last {_LOG_EVERY:g} s not logged)"
        logger.log(level, message, *args)


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


class NotificationReceiver:
    """Answers Market's notification requests and runs ``callback`` per new event.

    Framework-free: give :meth:`handle` the body (and the secret, source
    address and ``Content-Type`` of the request), send back the answer's
    status and body (``application/json``). For aiohttp use
    :func:`add_notification_route` or :meth:`aiohttp_handler`.

    ``name``, ``version``: your integration's, 1..100 characters (the answer's
    schema). ``secret``: when set, a request must carry it (a URL path segment
    or a header, compared in constant time) or is answered 403. ``allow``: a
    hook on the source address; False is answered 403. ``business_ids``: when
    set, an event naming another business is answered 403. ``max_body_bytes``:
    larger bodies are answered 400. ``max_pending``: callbacks running at once;
    past it a new event is answered ``500 UNKNOWN`` (not remembered, so
    Market's redelivery is heard). ``callback_timeout``: cancel a callback
    running longer (``None``: never). ``seen``, ``seen_timeout``,
    ``reject_duplicates``: the seen-set; see ``docs/notifications.md``.

    Call :meth:`aclose` at shutdown to let running callbacks finish.
    """

    def __init__(
        self,
        callback: Callback,
        *,
        name: str,
        version: str,
        secret: str | None = None,
        secret_header: str | None = None,
        allow: AllowHook | None = None,
        business_ids: Iterable[int] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
        callback_timeout: float | None = None,
        seen: SeenStore | None = None,
        reject_duplicates: bool = False,
        seen_timeout: float = 5.0,
    ) -> None:
        if not callable(callback):
            raise InvalidRequestError("callback must be an async callable taking the event")
        if allow is not None and not callable(allow):
            raise InvalidRequestError("allow must be a callable taking the source address")
        self.callback = callback
        self.name = _text("name", name)
        self.version = _text("version", version)
        self._secret = check_secret(secret)
        if secret_header is not None and (not isinstance(secret_header, str) or not secret_header):
            raise InvalidRequestError("secret_header must be a header name")
        #: The header carrying the secret; ``None``: the ``{secret}`` path segment.
        self.secret_header = secret_header
        self.allow = allow
        self.business_ids = business_set("business_ids", business_ids)
        self.max_body_bytes = _count("max_body_bytes", max_body_bytes, 1024)
        self.max_pending = _count("max_pending", max_pending, 1)
        self.callback_timeout = (
            None if callback_timeout is None else seconds("callback_timeout", callback_timeout)
        )
        self.seen: SeenStore = seen if seen is not None else MemorySeenStore()
        self.reject_duplicates = reject_duplicates
        self.seen_timeout = seconds("seen_timeout", seen_timeout)
        #: Answers given, by outcome: ``accepted``, ``ping``, ``duplicate``,
        #: ``forbidden``, ``wrong_business``, ``bad_format``, ``busy``, ``closing``,
        #: ``seen_failed``.
        self.counts: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved = 0
        # Set by aclose(): new events are refused from then on. `_closed`: aclose()
        # has returned, so a callback starting now would outlive the shutdown.
        self._closing = False
        self._closed = False
        self._settled: asyncio.Event | None = None  # aclose() waits on it
        self._log = _QuietLog()

    def __repr__(self) -> str:
        return (
            f"NotificationReceiver(name={self.name!r}, secret={'set' if self._secret else None},"
            f" pending={self.pending}/{self.max_pending})"
        )

    @property
    def pending(self) -> int:
        """Callbacks running or about to start."""
        return len(self._tasks) + self._reserved

    @property
    def closing(self) -> bool:
        """True once :meth:`aclose` was called: new events are answered 500."""
        return self._closing

    def _release(self) -> None:
        """Give back one reservation (the callback started, or will not)."""
        self._reserved -= 1
        if self._settled is not None:
            self._settled.set()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._settled is not None:
            self._settled.set()

    def ok(self) -> bytes:
        """The success body: this app's version and name, and the time now."""
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        return _encode(_Ok(version=self.version, name=self.name, time=now))

    @staticmethod
    def error(kind: str, message: str) -> bytes:
        """An error body: ``{"error": {"type": kind, "message": message}}``."""
        return _encode(_Error(error=_ErrorDetail(type=kind, message=message)))

    def _refuse(self, outcome: str, status: int, kind: str, message: str) -> NotificationAnswer:
        self.counts[outcome] += 1
        return NotificationAnswer(status, self.error(kind, message), None)

    # -- the guards ------------------------------------------------------------------

    def _check_caller(self, secret: str | None, remote: str | None) -> NotificationAnswer | None:
        """403 for a wrong or missing secret or a source the allow hook refuses."""
        if self._secret is not None and not secret_matches(self._secret, secret):
            self._log(
                logging.INFO, "secret", "refused a notification from %s: wrong secret", remote
            )
            return self._refuse("forbidden", 403, "UNKNOWN", "forbidden")
        if self.allow is not None:
            try:
                allowed = remote is not None and bool(self.allow(remote))
            except Exception:
                logger.exception("the allow hook failed on %r; refusing", remote)
                allowed = False
            if not allowed:
                self._log(logging.INFO, "allow", "refused a notification from %s", remote)
                return self._refuse("forbidden", 403, "UNKNOWN", "forbidden")
        return None

    def _check_content_type(self, content_type: str | None) -> NotificationAnswer | None:
        if content_type is None:
            return None
        media = content_type.partition(";")[0].strip().lower()
        if media == CONTENT_TYPE:
            return None
        message = f"Content-Type must be {CONTENT_TYPE}, got {content_type[:60]!r}"
        return self._refuse("bad_format", 400, "WRONG_EVENT_FORMAT", message)

    def _too_large(self, size: int) -> NotificationAnswer:
        message = f"body is {size} bytes or more, over the limit of {self.max_body_bytes} bytes"
        return self._refuse("bad_format", 400, "WRONG_EVENT_FORMAT", message)

    # -- answering -----------------------------------------------------------------------

    async def handle(
        self,
        body: bytes | str,
        *,
        secret: str | None = None,
        remote: str | None = None,
        content_type: str | None = None,
    ) -> NotificationAnswer:
        """Answer one notification request; start the callback if the event is new.

        ``secret``: what the request carried (its ``{secret}`` path segment or
        header), required when the receiver has one. ``remote``: the source
        address, required when there is an ``allow`` hook. ``content_type``:
        the request's header, checked when given.
        """
        answer, start = await self._decide(body, secret, remote, content_type, checked=False)
        if start is not None:
            start()
        return answer

    async def _decide(
        self,
        body: bytes | str,
        secret: str | None,
        remote: str | None,
        content_type: str | None,
        *,
        checked: bool,
    ) -> tuple[NotificationAnswer, Callable[[], None] | None]:
        """The answer, and what starts the callback (run it once the answer is out)."""
        if not checked:
            refused = self._check_caller(secret, remote) or self._check_content_type(content_type)
            if refused is not None:
                return refused, None
        try:
            event = decode_notification(body, max_bytes=self.max_body_bytes)
        except NotificationFormatError as exc:
            self._log(logging.WARNING, "format", "refused a notification: %s", exc)
            return self._refuse("bad_format", 400, "WRONG_EVENT_FORMAT", str(exc)), None
        if isinstance(event, PingNotification):
            self.counts["ping"] += 1
            return NotificationAnswer(200, self.ok(), None), None
        refused = self._check_business(event)
        if refused is not None:
            return refused, None
        if self._closing:
            # Not remembered: the redelivery, to this service restarted, is heard.
            self._log(
                logging.WARNING,
                "closing",
                "shutting down; answering 500 to a %s so that Market delivers it again later",
                event_type(event),
            )
            return self._refuse(
                "closing", 500, "UNKNOWN", "shutting down, deliver again later"
            ), None
        if self.pending >= self.max_pending:
            # Not remembered: Market's redelivery must find the key free.
            self._log(
                logging.WARNING,
                "busy",
                "%d notification callbacks running (max_pending); answering 500 to a %s"
                " so that Market delivers it again later",
                self.pending,
                event_type(event),
            )
            message = f"busy: {self.pending} events in progress, deliver again later"
            return self._refuse("busy", 500, "UNKNOWN", message), None
        key = dedup_key(event)
        self._reserved += 1  # held until the callback starts, or given back
        try:
            answer, new = await self._remember(key)
        except BaseException:
            self._release()
            raise
        if new and self._closed:
            # aclose() gave up waiting for this one: too late to run a callback.
            await self._forget(key)
            new = False
            answer = self._refuse("closing", 500, "UNKNOWN", "shutting down, deliver again later")
        if not new:
            self._release()
            return answer, None
        self.counts["accepted"] += 1
        started = False

        def start() -> None:
            nonlocal started
            if started:
                return
            started = True
            self._release()
            if self._closed:
                logger.error("shut down before the callback for %s could start; dropped", key)
                return
            task = asyncio.get_running_loop().create_task(self._run(event, key))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

        return NotificationAnswer(200, self.ok(), event), start

    def _check_business(self, event: Notification) -> NotificationAnswer | None:
        """403 for an event naming a business outside ``business_ids``.

        An unknown type's ``businessId`` is checked too: present, it must be
        an int in the set (``"5"``, ``5.0``, ``null`` are refused).
        """
        if self.business_ids is None:
            return None
        if isinstance(event, UnknownNotification):
            if "businessId" not in event.raw:
                return None
            business: object = event.raw["businessId"]
        else:
            business = business_of(event)
            if business is None:
                return None
        if type(business) is int and business in self.business_ids:
            return None
        shown = _show(business)
        kind = event_type(event)
        self._log(logging.WARNING, "business", "refused a %s for business %s", kind, shown)
        message = f"business {shown} is not served here"
        return self._refuse("wrong_business", 403, "UNKNOWN", message)

    async def _forget(self, key: str) -> None:
        try:
            await asyncio.wait_for(self.seen.discard(key), self.seen_timeout)
        except Exception:
            logger.exception("could not forget %s in the seen-set", key)

    async def _remember(self, key: str) -> tuple[NotificationAnswer, bool]:
        """Put ``key`` in the seen-set: the answer unless it is new, and whether it is."""
        try:
            new = await asyncio.wait_for(self.seen.add(key), self.seen_timeout)
        except Exception as exc:
            logger.exception("seen-set failed for %s; answering UNKNOWN", key)
            # The store may have kept the key before failing or timing out;
            # forget it, or Market's redelivery would be dropped as a repeat.
            await self._forget(key)
            detail = "seen-set timed out" if isinstance(exc, asyncio.TimeoutError) else "internal"
            return self._refuse("seen_failed", 500, "UNKNOWN", detail), False
        if new:
            return NotificationAnswer(200, b"", None), True
        logger.debug("dropped a repeated notification %s", key)
        if self.reject_duplicates:
            message = f"already received: {key}"
            return self._refuse("duplicate", 400, "DUPLICATED_EVENT", message), False
        self.counts["duplicate"] += 1
        return NotificationAnswer(200, self.ok(), None), False

    async def _run(self, event: Notification, key: str) -> None:
        try:
            if self.callback_timeout is None:
                await self.callback(event)
            else:
                await asyncio.wait_for(self.callback(event), self.callback_timeout)
        except asyncio.TimeoutError:
            logger.error(
                "notification callback for %s ran over %s s; cancelled", key, self.callback_timeout
            )
        except Exception:
            logger.exception("notification callback failed for %s", key)

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Stop accepting events; wait for callbacks (up to ``timeout`` s), cancel the rest.

        From the call on, new events are answered ``500 UNKNOWN`` and not
        remembered, so Market delivers them again later. Events accepted
        before it (their seen-set call still running, their answer still
        being written) are waited for too, until none is left. Calling it
        again is harmless.
        """
        self._closing = True
        # Made here, in the loop that waits on it; set whenever `pending` goes down.
        if self._settled is None:
            self._settled = asyncio.Event()
        settled = self._settled
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.pending:
            settled.clear()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            # Woken when a reservation is given back or a callback ends.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(settled.wait(), left)
        self._closed = True
        late = set(self._tasks)
        for task in late:
            task.cancel()
        if late:
            logger.warning("cancelled %d notification callbacks at shutdown", len(late))
            await asyncio.wait(late)
        if self._reserved:
            logger.warning(
                "%d notification events were still being accepted at shutdown", self._reserved
            )

    # -- aiohttp ---------------------------------------------------------------------------

    async def aiohttp_handler(self, request: web.Request) -> web.StreamResponse:
        """An aiohttp.web handler for ``POST``; the route needs ``{secret}`` if the secret
        is a path segment: ``app.router.add_post("/{secret}/notification", r.aiohttp_handler)``.

        The secret, the source address (``request.remote``; behind a proxy see
        the docs) and the ``Content-Type`` are checked before the body is read;
        the body is read up to ``max_body_bytes``. The answer is written out
        before the callback starts.
        """
        if self.secret_header is not None:
            secret = request.headers.get(self.secret_header)
        else:
            secret = request.match_info.get("secret")
        refused = self._check_caller(secret, request.remote) or self._check_content_type(
            request.headers.get("Content-Type", "")
        )
        if refused is None and (request.content_length or 0) > self.max_body_bytes:
            refused = self._too_large(request.content_length or 0)
        if refused is not None:
            return _response(refused)
        chunks: list[bytes] = []
        size = 0
        while size <= self.max_body_bytes:
            chunk = await request.content.read(self.max_body_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > self.max_body_bytes:
            return _response(self._too_large(size))
        answer, start = await self._decide(b"".join(chunks), None, None, None, checked=True)
        response = _response(answer)
        if start is None:
            return response
        try:
            # Out on the wire first: a callback that blocks the loop then
            # delays nothing Market is waiting for.
            await response.prepare(request)
            await response.write_eof()
        finally:
            start()
        return response


def event_type(event: Notification) -> str:
    """The ``notificationType`` of any decoded event, fit for a log line.

    An unknown type is the sender's text, of any length and with any
    characters: long or unprintable, it is shown as its digest.
    """
    return _short(event.notification_type)


def _show(value: object) -> str:
    """A short, always printable description of a refused ``businessId``."""
    if type(value) is int:
        return (
            str(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
        )
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
    return repr(value) if isinstance(value, (float, bool, type(None))) else type(value).__name__


def _response(answer: NotificationAnswer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, content_type=CONTENT_TYPE)


def add_notification_route(
    app: web.Application,
    path: str,
    callback: Callback,
    *,
    name: str,
    version: str,
    secret: str | None = None,
    secret_header: str | None = None,
    allow: AllowHook | None = None,
    business_ids: Iterable[int] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_pending: int = DEFAULT_MAX_PENDING,
    callback_timeout: float | None = None,
    seen: SeenStore | None = None,
    reject_duplicates: bool = False,
    seen_timeout: float = 5.0,
) -> NotificationReceiver:
    """Receive notifications on ``POST path`` of an aiohttp app; return the receiver.

    With ``secret`` and no ``secret_header``, ``path`` must hold a ``{secret}``
    segment, e.g. ``"/market/{secret}/notification"``. The other options are
    :class:`NotificationReceiver`'s. When the app shuts down the receiver stops
    accepting events (first ``on_shutdown`` hook) and every callback of an
    event accepted before is awaited: at that hook, and again as the first
    ``on_cleanup`` hook (aiohttp runs it once the request handlers are done),
    so callbacks are over before the other cleanup closes what they use.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequestError(f"path must start with '/', got {path!r}")
    if secret is not None and secret_header is None and "{secret}" not in path:
        raise InvalidRequestError(
            "path must hold a {secret} segment (e.g. '/market/{secret}/notification')"
            " when the secret is not in a header (secret_header)"
        )
    receiver = NotificationReceiver(
        callback,
        name=name,
        version=version,
        secret=secret,
        secret_header=secret_header,
        allow=allow,
        business_ids=business_ids,
        max_body_bytes=max_body_bytes,
        max_pending=max_pending,
        callback_timeout=callback_timeout,
        seen=seen,
        reject_duplicates=reject_duplicates,
        seen_timeout=seen_timeout,
    )
    app.router.add_post(path, receiver.aiohttp_handler)

    async def drain(_: web.Application) -> None:
        await receiver.aclose()

    # aiohttp's order: on_shutdown, then it waits for the handlers still
    # running, then on_cleanup (its cleanup contexts first, then the hooks).
    app.on_shutdown.insert(0, drain)
    app.on_cleanup.insert(0, drain)
    return receiver
