"""The receiver: answers Market's notification POSTs and runs a callback per new event.

Guards run cheapest first and each refusal leaves no trace: the secret and the
source address (403), the ``Content-Type`` and the size (400), the JSON and
its nesting (400), the business (403), not shutting down and room for one
more callback (500, so Market delivers again later), and only then the
seen-set and the callback. The answer never waits for the callback; at
shutdown :meth:`NotificationReceiver.aclose` waits for every event accepted.
Framework-free: the aiohttp adapter is ``_aiohttp``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from ._answers import CONTENT_TYPE, NotificationAnswer, error_body, ok_body
from ._events import (
    Notification,
    NotificationFormatError,
    PingNotification,
    UnknownNotification,
    _short,
    business_of,
    decode_notification,
    dedup_key,
)
from ._guards import secret_matches
from ._options import ReceiverOptions, takes_options
from ._seen import MemorySeenStore, SeenStore

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["NotificationReceiver"]

logger = logging.getLogger("yamarket_chats.notifications")

# Refusals a flood can cause are logged at most once per this many seconds
# (with how many were not logged), so forgeries cannot flood the logs instead.
_LOG_EVERY: Final = 10.0
_LATER: Final = "shutting down, deliver again later"


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
    The options, checked, are :attr:`options` (a :class:`ReceiverOptions`).

    Call :meth:`aclose` at shutdown to let running callbacks finish.
    """

    @takes_options(ReceiverOptions)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: The options this receiver was made with, checked.
        self.options = options = ReceiverOptions(*args, **kwargs)
        #: The seen-set: ``options.seen``, or one in memory.
        self.seen: SeenStore = options.seen if options.seen is not None else MemorySeenStore()
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
        options = self.options
        return (
            f"NotificationReceiver(name={options.name!r},"
            f" secret={'set' if options.secret_key else None},"
            f" pending={self.pending}/{options.max_pending})"
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
        return ok_body(self.options.name, self.options.version)

    @staticmethod
    def error(kind: str, message: str) -> bytes:
        """An error body: ``{"error": {"type": kind, "message": message}}``."""
        return error_body(kind, message)

    def _refuse(self, outcome: str, status: int, kind: str, message: str) -> NotificationAnswer:
        self.counts[outcome] += 1
        return NotificationAnswer(status, self.error(kind, message), None)

    # -- the guards ------------------------------------------------------------------

    def _check_request(
        self, secret: str | None, remote: str | None, content_type: str | None
    ) -> NotificationAnswer | None:
        """The refusal of a request by what it carries besides its body, if any."""
        return self._check_caller(secret, remote) or self._check_content_type(content_type)

    def _check_caller(self, secret: str | None, remote: str | None) -> NotificationAnswer | None:
        """403 for a wrong or missing secret or a source the allow hook refuses."""
        key, allow = self.options.secret_key, self.options.allow
        if key is not None and not secret_matches(key, secret):
            self._log(
                logging.INFO, "secret", "refused a notification from %s: wrong secret", remote
            )
            return self._refuse("forbidden", 403, "UNKNOWN", "forbidden")
        if allow is not None:
            try:
                allowed = remote is not None and bool(allow(remote))
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
        limit = self.options.max_body_bytes
        message = f"body is {size} bytes or more, over the limit of {limit} bytes"
        return self._refuse("bad_format", 400, "WRONG_EVENT_FORMAT", message)

    def _check_business(self, event: Notification) -> NotificationAnswer | None:
        """403 for an event naming a business outside ``business_ids``."""
        shown = _foreign_business(event, self.options.business_ids)
        if shown is None:
            return None
        kind = event_type(event)
        self._log(logging.WARNING, "business", "refused a %s for business %s", kind, shown)
        message = f"business {shown} is not served here"
        return self._refuse("wrong_business", 403, "UNKNOWN", message)

    def _check_room(self, event: Notification) -> NotificationAnswer | None:
        """500 while shutting down or with ``max_pending`` callbacks running.

        Not remembered in the seen-set: Market's redelivery, to this service
        or to it restarted, must find the key free.
        """
        if self._closing:
            self._log(
                logging.WARNING,
                "closing",
                "shutting down; answering 500 to a %s so that Market delivers it again later",
                event_type(event),
            )
            return self._refuse("closing", 500, "UNKNOWN", _LATER)
        if self.pending >= self.options.max_pending:
            self._log(
                logging.WARNING,
                "busy",
                "%d notification callbacks running (max_pending); answering 500 to a %s"
                " so that Market delivers it again later",
                self.pending,
                event_type(event),
            )
            message = f"busy: {self.pending} events in progress, deliver again later"
            return self._refuse("busy", 500, "UNKNOWN", message)
        return None

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
        refused = self._check_request(secret, remote, content_type)
        if refused is not None:
            return refused
        answer, start = await self._decide(body)
        if start is not None:
            start()
        return answer

    async def _decide(
        self, body: bytes | str
    ) -> tuple[NotificationAnswer, Callable[[], None] | None]:
        """The answer to a body from a caller let in, and what starts the callback
        (``None`` if nothing is to run; else run it once the answer is out)."""
        try:
            event = decode_notification(body, max_bytes=self.options.max_body_bytes)
        except NotificationFormatError as exc:
            self._log(logging.WARNING, "format", "refused a notification: %s", exc)
            return self._refuse("bad_format", 400, "WRONG_EVENT_FORMAT", str(exc)), None
        if isinstance(event, PingNotification):
            self.counts["ping"] += 1
            return NotificationAnswer(200, self.ok(), None), None
        refused = self._check_business(event) or self._check_room(event)
        if refused is not None:
            return refused, None
        return await self._accept(event)

    async def _accept(
        self, event: Notification
    ) -> tuple[NotificationAnswer, Callable[[], None] | None]:
        """Remember a new event (a slot held meanwhile); a repeat is answered as one."""
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
            answer = self._refuse("closing", 500, "UNKNOWN", _LATER)
        if not new:
            self._release()
            return answer, None
        self.counts["accepted"] += 1
        return NotificationAnswer(200, self.ok(), event), self._starter(event, key)

    def _starter(self, event: Notification, key: str) -> Callable[[], None]:
        """What starts the callback of an accepted event; calling it again does nothing."""
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

        return start

    async def _forget(self, key: str) -> None:
        try:
            await asyncio.wait_for(self.seen.discard(key), self.options.seen_timeout)
        except Exception:
            logger.exception("could not forget %s in the seen-set", key)

    async def _remember(self, key: str) -> tuple[NotificationAnswer, bool]:
        """Put ``key`` in the seen-set: the answer unless it is new, and whether it is."""
        try:
            new = await asyncio.wait_for(self.seen.add(key), self.options.seen_timeout)
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
        if self.options.reject_duplicates:
            message = f"already received: {key}"
            return self._refuse("duplicate", 400, "DUPLICATED_EVENT", message), False
        self.counts["duplicate"] += 1
        return NotificationAnswer(200, self.ok(), None), False

    async def _run(self, event: Notification, key: str) -> None:
        callback, timeout = self.options.callback, self.options.callback_timeout
        try:
            if timeout is None:
                await callback(event)
            else:
                await asyncio.wait_for(callback(event), timeout)
        except asyncio.TimeoutError:
            logger.error("notification callback for %s ran over %s s; cancelled", key, timeout)
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

    async def aiohttp_handler(self, request: web.Request) -> web.StreamResponse:
        """An aiohttp.web handler for ``POST``; the route needs ``{secret}`` if the secret
        is a path segment: ``app.router.add_post("/{secret}/notification", r.aiohttp_handler)``.

        The secret, the source address (``request.remote``; behind a proxy see
        the docs) and the ``Content-Type`` are checked before the body is read;
        the body is read up to ``max_body_bytes``. The answer is written out
        before the callback starts.
        """
        from ._aiohttp import serve  # the adapter sits above the receiver it adapts

        return await serve(self, request)


def event_type(event: Notification) -> str:
    """The ``notificationType`` of any decoded event, fit for a log line.

    An unknown type is the sender's text, of any length and with any
    characters: long or unprintable, it is shown as its digest.
    """
    return _short(event.notification_type)


def _foreign_business(event: Notification, served: Iterable[int] | None) -> str | None:
    """The ``businessId`` of ``event``, shown, if it is not one of ``served``; else None.

    An unknown type's ``businessId`` is checked too: present, it must be
    an int in the set (``"5"``, ``5.0``, ``null`` are refused).
    """
    if served is None:
        return None
    if isinstance(event, UnknownNotification):
        if "businessId" not in event.raw:
            return None
        business: object = event.raw["businessId"]
    else:
        business = business_of(event)
        if business is None:
            return None
    if type(business) is int and business in served:
        return None
    return _show(business)


def _show(value: object) -> str:
    """A short, always printable description of a refused ``businessId``."""
    if type(value) is int:
        return (
            str(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
        )
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
    return repr(value) if isinstance(value, (float, bool, type(None))) else type(value).__name__
