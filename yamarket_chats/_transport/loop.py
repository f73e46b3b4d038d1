"""`Transport`: the request loop behind `ChatsClient`, as four stages.

One call goes around the loop once per attempt:

1. **acquire** a lease from the limiter (quota, bucket, a parallel slot),
   within the call's deadline (``max_wait``);
2. **attempt** the HTTP request on the session `sessions.Sessions` picks, and
   finish the lease with what came back, before anything else happens;
3. **classify** what came back (`retry.classify`, pure);
4. **decide**: done, raise, or go round again (`retry.decide`, pure).

Every event of a call (start, wait, request, response, retry, end) is told
to the built-in stats first (`stats.StatsHooks`, plain calls), then to the
user's hooks (`hooks.HookSet`, awaited): one channel, and no coroutine per
event for a client without hooks of its own. One `Transport` is shared by a client and all its
``with_options`` views.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import platform
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import msgspec
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .._operations import Operation
from .._version import __version__
from ..errors import (
    CLIENT_QUOTA_WAIT,
    RateLimitError,
    TransportError,
    YandexMarketError,
)
from ..hooks import CallInfo, HookSet
from ..limits import NOT_SENT, Limiter, WaitTooLong
from ..models import ApiErrorDetail
from ..stats import ClientStats, StatsHooks
from .retry import NO_TRIES, Action, Answer, Kind, Outcome, Policy, classify, decide
from .sessions import Sessions

__all__ = ["WAIT_WARNING_SECONDS", "Transport"]

logger = logging.getLogger("yamarket_chats")

#: A wait on client-side limits longer than this is logged at WARNING.
WAIT_WARNING_SECONDS: Final = 1.0
#: Who is calling, for the API's operators: this library, its HTTP stack, Python.
USER_AGENT: Final = (
    f"yamarket-chats/{__version__} aiohttp/{aiohttp.__version__} python/{platform.python_version()}"
)

_UTC = dt.timezone.utc
_NO_HOOKS: Final = HookSet([])
_SECRET_HEADERS = frozenset({"api-key", "authorization"})


@dataclass(slots=True)  # (not frozen: a frozen init costs 6x, once per call)
class _Request:
    """What one call sends, made once per call: the loop's only parameter (read-only)."""

    op: Operation
    business_id: int
    url: URL
    headers: CIMultiDict[str]
    body: bytes | None
    file: tuple[bytes, str, str] | None
    decoder: msgspec.json.Decoder[Any] | None
    policy: Policy
    deadline: float | None  # on the loop's clock
    timeout: aiohttp.ClientTimeout  # the policy's whole timeout


class Transport:
    """Sessions, limiter and the event channel of one client, and the request loop."""

    def __init__(
        self,
        *,
        auth: Mapping[str, str],
        base: str,
        limiter: Limiter,
        session: aiohttp.ClientSession | None,
        keep_alive: bool,
        hooks: object | Sequence[object] | None,
    ) -> None:
        plain = {**auth, "Accept": "application/json"}
        if session is None or hdrs.USER_AGENT not in session.headers:
            plain[hdrs.USER_AGENT] = USER_AGENT  # a caller's session keeps its own
        close = {**plain, "Connection": "close"}
        # Reads say nothing about the connection when pooling, so the server
        # decides (and aiohttp obeys its `Connection: close`); sends always
        # ask for a connection of their own.
        read = plain if keep_alive else close
        json = {"Content-Type": "application/json"}
        # Ready multidicts: aiohttp merges these into each request's headers
        # without converting them first.
        self._read_headers: Final = (CIMultiDict(read), CIMultiDict({**read, **json}))
        self._send_headers: Final = (CIMultiDict(close), CIMultiDict({**close, **json}))
        self._base = base  # ".../v2/businesses/"
        self.limiter = limiter
        self.sessions = Sessions(session, keep_alive)
        self.stats = ClientStats()
        self.counting = StatsHooks(self.stats)  # the built-in hook, told first
        self.hooks = HookSet.build(hooks)  # the user's, None when there are none
        self.events = self.hooks or _NO_HOOKS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is None:
            self._loop = loop
            return
        raise YandexMarketError(
            "this ChatsClient was first used in another event loop"
            f"{' (now closed)' if self._loop.is_closed() else ''}: create the client "
            "inside the running loop; one client per loop (e.g. in the app's lifespan, "
            "or once per asyncio.run)"
        )

    async def close(self) -> None:
        """Close the sessions this transport made (never a caller's). Idempotent."""
        if not self.sessions.closed:
            other_loop = self._loop is not None and self._loop is not asyncio.get_running_loop()
            await self.sessions.close(wait=not other_loop)

    # -- the request loop ------------------------------------------------------

    async def call(
        self,
        op: Operation,
        policy: Policy,
        business_id: int,
        query: str,
        decoder: msgspec.json.Decoder[Any] | None,
        body: bytes | None = None,
        file: tuple[bytes, str, str] | None = None,
    ) -> Any:
        """Send one operation, waiting on limits and retrying per `policy`."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        self.sessions.check_open()
        max_wait = policy.max_wait
        request = _Request(
            op,
            business_id,
            URL(f"{self._base}{business_id}{op.path}{query}", encoded=True),
            (self._read_headers if op.idempotent else self._send_headers)[body is not None],
            body,
            file,
            decoder,
            policy,
            None if max_wait is None else loop.time() + max_wait,
            self._timeouts.get(policy.timeout) or self._full_timeout(policy.timeout),
        )
        call = CallInfo(op.name, business_id, max_wait)
        events = self.events
        try:
            self.counting.on_start(call)
            for hook in events.on_start:
                await hook(call)
            return await self._send(request, call, loop)
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            self.counting.on_end(call)
            if events.on_end:
                await _call_all(events.on_end, call)
            del call  # holds the error, whose traceback holds this frame: no cycle

    async def _send(
        self, request: _Request, call: CallInfo, loop: asyncio.AbstractEventLoop
    ) -> Any:
        """The loop: acquire, attempt, classify, decide; once per attempt."""
        op = request.op
        tries = NO_TRIES
        session = self.sessions.pick(op.idempotent)
        while True:
            lease, timeout = await self._acquire(request, call, loop)
            answer = await self._attempt(request, session, lease, timeout)
            outcome = classify(
                answer,
                method=op.name,
                business_id=request.business_id,
                decoder=request.decoder,
                max_wait=request.policy.max_wait,
            )
            status = self._report(call, answer, outcome)
            for hook in self.events.on_response:
                await hook(call, status, answer.elapsed, answer.error)
            if outcome.kind == Kind.OK:  # the usual case, and nothing to decide
                return outcome.result
            decision = decide(
                outcome,
                tries,
                request.policy,
                idempotent=op.idempotent,
                deadline=request.deadline,
                now=loop.time(),
                jitter=random.random(),
            )
            if decision.note is not None:
                _warn(
                    op.name,
                    request.business_id,
                    outcome.reason,
                    decision.note,
                    attempt=call.attempts,
                    status=status,
                )
            if decision.action is Action.RAISE:
                try:
                    raise _error(outcome) from outcome.cause
                finally:  # the error's traceback holds this frame: no cycle through its locals
                    del outcome, answer, call
            tries = decision.tries
            if outcome.kind == Kind.STALE:
                session = self.sessions.fresh()  # again at once, on a new connection
            if decision.action is Action.RETRY:
                await self._pause(call, outcome.reason, decision.delay)

    async def _acquire(
        self, request: _Request, call: CallInfo, loop: asyncio.AbstractEventLoop
    ) -> tuple[Any, aiohttp.ClientTimeout]:
        """Stage 1: a lease within the deadline, then all that must hold before sending.

        From the lease on, whatever happens before the request goes out gives
        the lease back with `NOT_SENT` (refunded: nothing reached the server).
        """
        limiter = self.limiter
        before = loop.time()
        try:
            lease = await limiter.acquire(request.business_id, request.op.name, request.deadline)
        except WaitTooLong as exc:
            raise _quota_error(request, exc.retry_in, exc.waited_for) from None
        try:
            now = loop.time()
            waited = now - before
            if waited > 0.001:
                if waited >= WAIT_WARNING_SECONDS:
                    _warn(
                        request.op.name, request.business_id, "waited on limits", f"{waited:.1f} s"
                    )
                call.waited_seconds += waited
                self.counting.on_wait(call, "limits", waited)
                for wait_hook in self.events.on_wait:
                    await wait_hook(call, "limits", waited)
            call.attempts += 1
            if self.events.on_request:
                for hook in self.events.on_request:
                    await hook(call)
                now = loop.time()
            self.sessions.check_open()  # closed meanwhile: nothing goes out
            return lease, self._timeout(request, now)
        except BaseException:
            await limiter.finish(lease, NOT_SENT, None)
            raise

    def _timeout(self, request: _Request, now: float) -> aiohttp.ClientTimeout:
        """The request's timeout: the policy's, or what is left of ``max_wait`` for a read."""
        policy, deadline = request.policy, request.deadline
        if deadline is not None and deadline - now < policy.timeout:
            if request.op.idempotent:
                return aiohttp.ClientTimeout(total=max(deadline - now, 0.001))
            if now >= deadline:
                # A send is never cut short (its fate would be unknown):
                # it gets its full timeout, or does not go out at all.
                raise TransportError(
                    f"max_wait of {policy.max_wait:g} s ran out before the send went "
                    "out; nothing was sent",
                    method=request.op.name,
                    business_id=request.business_id,
                )
        return request.timeout

    def _full_timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """A policy's whole timeout, made once per value (the call looks it up first)."""
        timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def _attempt(
        self,
        request: _Request,
        session: aiohttp.ClientSession,
        lease: Any,
        timeout: aiohttp.ClientTimeout,
    ) -> Answer:
        """Stage 2: one HTTP request; the lease is finished first, whatever came back."""
        sessions = self.sessions
        data: Any = request.body
        if request.file is not None:
            content, filename, content_type = request.file
            data = aiohttp.FormData()
            data.add_field("file", content, filename=filename, content_type=content_type)
        status: int | None = None
        headers: Mapping[str, str] | None = None
        raw = b""
        error: aiohttp.ClientError | asyncio.TimeoutError | None = None
        stale = False
        sessions.begin(session)
        sent = time.monotonic()  # a request's time is real time, whatever the loop's clock
        try:
            # A caller's session may raise for status or follow redirects
            # (carrying the Api-Key to another host): not here.
            async with session.request(
                request.op.http,
                request.url,
                data=data,
                headers=request.headers,
                timeout=timeout,
                raise_for_status=False,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                headers = resp.headers
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = exc
            stale = sessions.stale(session, exc)
        finally:  # before any backoff: a sleeping retry holds no slot
            reset_in = await self.limiter.finish(lease, NOT_SENT if stale else status, headers)
        elapsed = time.monotonic() - sent
        if error is not None:
            if isinstance(error, aiohttp.ClientResponseError):
                _hide_secrets(error)
            if sessions.closed:
                what = "" if request.op.idempotent else "; the server may have acted on the send"
                raise TransportError(
                    f"this ChatsClient was closed during the request{what}",
                    method=request.op.name,
                    business_id=request.business_id,
                ) from error
        elif headers is not None:
            sessions.answered(session, headers)
        cut_short = timeout is not request.timeout
        try:
            return Answer(status, raw, headers, error, stale, cut_short, reset_in, elapsed)
        finally:  # the error's traceback holds this frame: no cycle through its locals
            error = None

    def _report(self, call: CallInfo, answer: Answer, outcome: Outcome) -> int | None:
        """Between classify and decide: the debug line, the call's info, the stats.

        Returns the status ``on_response`` is told (``None`` when no answer came).
        """
        error = answer.error
        status = answer.status if error is None else None
        _log(call, status, status or type(error).__name__, answer.elapsed)
        call.outcome = outcome.kind
        if status is not None:
            call.status = status
            call.headers = answer.headers
            if status == 420:
                call.rate_limited += 1
        self.counting.on_response(call, status, answer.elapsed, error)
        return status

    async def _pause(self, call: CallInfo, reason: str, delay: float) -> None:
        """Before a retry: ``on_retry``, then the backoff (none for a stale connection)."""
        call.waited_seconds += delay
        self.counting.on_retry(call, reason, delay)
        for hook in self.events.on_retry:
            await hook(call, reason, delay)
        if delay:
            await asyncio.sleep(delay)


def _error(outcome: Outcome) -> YandexMarketError:
    """The error a call gives up with; a spent quota's says when it is free again."""
    error = outcome.error
    assert error is not None  # every outcome that can be raised carries one
    if outcome.kind == Kind.QUOTA_SPENT and isinstance(error, RateLimitError):
        error.retry_at = dt.datetime.now(_UTC) + dt.timedelta(seconds=outcome.reset_in)
    return error


def _quota_error(
    request: _Request, retry_in: float | None, waited_for: str | None = None
) -> RateLimitError:
    """The limiter could not let the request go within ``max_wait``: nothing was sent."""
    if retry_in is None:
        what = waited_for or "every parallel-request slot stayed busy"
        retry_at = None
    else:
        what = f"the quota is spent for {retry_in:.1f} s more"
        retry_at = dt.datetime.now(_UTC) + dt.timedelta(seconds=retry_in)
    message = f"{what}, past max_wait={request.policy.max_wait:g} s; nothing was sent"
    _warn(request.op.name, request.business_id, "client-side quota wait", message)
    return RateLimitError(
        420,
        [ApiErrorDetail(code=CLIENT_QUOTA_WAIT, message=message)],
        method=request.op.name,
        business_id=request.business_id,
        retry_at=retry_at,
    )


async def _call_all(hooks: tuple[Any, ...], call: CallInfo) -> None:
    """Await every hook even if one raises (each may close a span); then raise the first error."""
    error: BaseException | None = None
    for hook in hooks:
        try:
            await hook(call)
        except BaseException as exc:
            if error is None:
                error = exc
    if error is not None:
        raise error


def _hide_secrets(exc: aiohttp.ClientResponseError) -> None:
    """Drop the key from an aiohttp error that carries the request's headers.

    `ClientResponseError.request_info` holds every header sent, ``Api-Key``
    included, and its repr shows them; the error is chained to ours as
    ``__cause__``, so it must not keep them.
    """
    info = exc.request_info
    if info is None or not any(k.lower() in _SECRET_HEADERS for k in info.headers):
        return
    kept = CIMultiDict((k, v) for k, v in info.headers.items() if k.lower() not in _SECRET_HEADERS)
    exc.request_info = aiohttp.RequestInfo(
        info.url, info.method, CIMultiDictProxy(kept), info.real_url
    )


# Each record also carries its fields as attributes (``extra``), for the CLI's
# JSON lines and for users' own formatters: business_id, method, attempt, status.


def _log(call: CallInfo, status: int | None, outcome: object, elapsed: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        method, business_id = call.method, call.business_id
        fields = {"business_id": business_id, "method": method, "attempt": call.attempts}
        fields["status"] = status
        logger.debug(
            "%s business=%d -> %s in %.3fs", method, business_id, outcome, elapsed, extra=fields
        )


def _warn(
    method: str,
    business_id: int,
    what: str,
    then: str,
    *,
    attempt: int | None = None,
    status: int | None = None,
) -> None:
    fields = {"business_id": business_id, "method": method, "attempt": attempt, "status": status}
    logger.warning("%s business=%d: %s; %s", method, business_id, what, then, extra=fields)
