"""The request loop behind `ChatsClient`: limits, deadline, retries, connections.

Kept apart from the operation methods so that each file has one job: this one
decides when and how a request goes out, how long a call may take in all
(``max_wait``), which answers are retried, on which connection, and what is
counted, logged and reported to hooks. One `Transport` is shared by a client
and all its ``with_options`` views.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import random
import socket
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp
import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .errors import (
    CLIENT_QUOTA_WAIT,
    ApiError,
    InvalidRequestError,
    RateLimitError,
    TransportError,
    YandexMarketError,
    error_for_status,
)
from .hooks import CallInfo, HookSet
from .limits import NOT_SENT, Limiter, WaitTooLong
from .models import ApiErrorDetail, _Envelope, _ErrorEnvelope
from .stats import ClientStats, _Counters

__all__ = ["WAIT_WARNING_SECONDS", "Operation", "Policy", "Transport"]

logger = logging.getLogger("yamarket_chats")

T = TypeVar("T")

_PARALLEL_420 = "420, quota left (parallel cap)"

#: A wait on client-side limits longer than this is logged at WARNING.
WAIT_WARNING_SECONDS: Final = 1.0

_error_decoder = msgspec.json.Decoder(_ErrorEnvelope)
_UTC = dt.timezone.utc
_SECRET_HEADERS = frozenset({"api-key", "authorization"})

# Reads on the pooled session after this many answers in a row said
# `Connection: close` go through the fresh (force-close) session instead, which
# skips the pool's bookkeeping for connections that never get reused; one read
# in `_REPROBE_EVERY` still tries the pool, and one answer keeping the
# connection open switches reads back to it.
_CLOSE_STREAK: Final = 8
_REPROBE_EVERY: Final = 64

# Set by `_PoolConnector.connect` in the task that sends a request: whether the
# connection came from the pool (True) or was opened for it (False).
_reused: contextvars.ContextVar[bool] = contextvars.ContextVar("yamarket_reused", default=False)


class _PoolConnector(aiohttp.TCPConnector):
    """A pooling connector that tells whether a request got a reused connection.

    A server may close an idle pooled connection just as a request is written
    to it; such a request never reached the server, so a read is sent again
    at once on a fresh connection. Only a reused connection can be stale.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._used: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Any:
        conn = await super().connect(req, traces, timeout)
        protocol = conn.protocol
        used = self._used
        if protocol in used:
            _reused.set(True)
        else:
            _reused.set(False)
            used.add(protocol)
        return conn


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation: its name (the client method), HTTP method and path."""

    name: str
    http: str
    path: str
    # Whether a failure that may have reached the server can be retried: reads
    # and create_chat (which returns the existing chat) can; sends cannot, and
    # they always go on a fresh connection.
    idempotent: bool


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


@dataclass(frozen=True, slots=True)
class _CallState:
    """What a backoff needs to know of the call it delays."""

    name: str
    business_id: int
    policy: Policy
    deadline: float | None  # time.monotonic() value
    counters: _Counters
    info: CallInfo | None


class Transport:
    """Sessions, limiter, stats and hooks of one client, and the request loop."""

    def __init__(
        self,
        *,
        auth: Mapping[str, str],
        base: str,
        limiter: Limiter,
        session: aiohttp.ClientSession | None,
        keep_alive: bool,
        hooks: HookSet | None,
    ) -> None:
        plain = {**auth, "Accept": "application/json"}
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
        self.stats = ClientStats()
        self.stats._read_waited = lambda: limiter.waited
        self.hooks = hooks
        self.keep_alive = keep_alive
        self._session = session  # the caller's, used as configured
        self._pooled: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        # Sends of a caller whose session pools connections go through this one.
        self._callers_fresh: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._closes = 0  # pooled reads answered `Connection: close` in a row
        self._bypassed = 0  # reads sent fresh since the streak was reached
        self.closed = False

    # -- sessions --------------------------------------------------------------

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

    def _fresh_session(self) -> aiohttp.ClientSession:
        """Our session whose every request opens a new connection and closes it."""
        session = self._fresh
        if session is None:
            if self.closed:
                raise self._closed_error()
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            session = self._fresh = _own_session(connector)
        return session

    def _pooled_session(self) -> aiohttp.ClientSession:
        session = self._pooled
        if session is None:
            if self.closed:
                raise self._closed_error()
            session = self._pooled = _own_session(_PoolConnector(limit=0))
        return session

    def _read_session(self) -> aiohttp.ClientSession:
        """Where an own read goes when pooling: the pool, unless the server never keeps one."""
        if self._closes >= _CLOSE_STREAK:
            self._bypassed += 1
            if self._bypassed % _REPROBE_EVERY:
                return self._fresh_session()
        return self._pooled_session()

    def _callers_send_session(self, caller: aiohttp.ClientSession) -> aiohttp.ClientSession:
        """Where a send goes when the caller gave a session: on a fresh connection.

        A caller's session that opens a connection per request is used as it
        is. One that pools connections could hand a send a pooled socket the
        server has closed, leaving its fate unknown: sends then go through a
        force-close session of ours with the caller's TLS, DNS, proxy, trace
        and default-header settings, made lazily and closed by `close`.
        """
        connector = caller.connector
        if connector is None or connector.force_close:
            return caller  # (a closed session is reported before the request)
        session = self._callers_fresh
        if session is not None:
            return session
        if self.closed:
            raise self._closed_error()
        if type(connector) is not aiohttp.TCPConnector:
            # A proxy or socket connector of another kind cannot be copied faithfully.
            raise InvalidRequestError(
                f"sends need a connection of their own, and the session= given pools "
                f"connections through a {type(connector).__name__} the client cannot copy: "
                "make its connector with force_close=True, or let the client make its session"
            )
        # aiohttp keeps these settings only in private attributes.
        fresh = aiohttp.TCPConnector(
            force_close=True,
            limit=0,
            ssl=getattr(connector, "_ssl", True),
            family=socket.AddressFamily(connector.family),
            resolver=getattr(connector, "_resolver", None),
        )
        options: dict[str, Any] = {
            "headers": caller.headers,
            "trust_env": caller.trust_env,
            "trace_configs": list(caller.trace_configs) or None,
        }
        proxy = getattr(caller, "_default_proxy", None)
        if proxy is not None:
            options["proxy"] = proxy
            options["proxy_auth"] = getattr(caller, "_default_proxy_auth", None)
        session = self._callers_fresh = _own_session(fresh, **options)
        return session

    async def close(self) -> None:
        """Close the sessions this transport made (never a caller's). Idempotent."""
        if self.closed:
            return
        self.closed = True
        made = (self._pooled, self._fresh, self._callers_fresh)
        sessions = [s for s in made if s is not None]
        self._pooled = self._fresh = self._callers_fresh = None
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            return  # its sockets belong to another loop; nothing can be awaited here
        for session in sessions:
            await session.close()

    # -- the request loop ------------------------------------------------------

    async def call(
        self,
        op: Operation,
        policy: Policy,
        business_id: int,
        query: str,
        decoder: msgspec.json.Decoder[_Envelope[T]] | None,
        body: bytes | None = None,
        file: tuple[bytes, str, str] | None = None,
    ) -> T | None:
        """Send one operation, waiting on limits and retrying per `policy`."""
        if asyncio.get_running_loop() is not self._loop:
            self._bind(asyncio.get_running_loop())
        if self.closed:
            raise self._closed_error()
        counters = self.stats._counters(business_id, op.name)
        counters.calls += 1
        hooks = self.hooks
        if hooks is None:
            try:
                return await self._send(
                    op, policy, business_id, query, decoder, body, file, counters, None
                )
            except YandexMarketError:
                counters.failed_calls += 1
                raise
        call = CallInfo(op.name, business_id, dt.datetime.now(_UTC), policy.max_wait)
        try:
            for hook in hooks.on_start:
                await hook(call)
            return await self._send(
                op, policy, business_id, query, decoder, body, file, counters, call
            )
        except BaseException as exc:
            call.error = exc
            if isinstance(exc, YandexMarketError):
                counters.failed_calls += 1
            raise
        finally:
            await _call_all(hooks.on_end, call)

    async def _send(
        self,
        op: Operation,
        policy: Policy,
        business_id: int,
        query: str,
        decoder: msgspec.json.Decoder[_Envelope[T]] | None,
        body: bytes | None,
        file: tuple[bytes, str, str] | None,
        counters: _Counters,
        call: CallInfo | None,
    ) -> T | None:
        started = time.monotonic()
        max_wait = policy.max_wait
        deadline = None if max_wait is None else started + max_wait
        callers = self._session
        session: aiohttp.ClientSession
        if callers is not None:
            session = callers
            if not op.idempotent:
                session = self._callers_send_session(callers)
        elif op.idempotent and self.keep_alive:
            session = self._read_session()
        else:
            session = self._fresh_session()
        headers = (self._read_headers if op.idempotent else self._send_headers)[body is not None]
        url = URL(f"{self._base}{business_id}{op.path}{query}", encoded=True)
        limiter = self.limiter
        stats = self.stats
        hooks = self.hooks
        name = op.name
        full_timeout = self._timeout(policy.timeout)
        failures = limited = attempts = 0
        while True:
            before = time.monotonic()
            try:
                lease = await limiter.acquire(business_id, name, deadline)
            except WaitTooLong as exc:
                raise self._quota_error(op, business_id, exc.retry_in, max_wait) from None
            # From here the lease is finished exactly once, whatever happens:
            # with NOT_SENT (refunded) if the request never goes out.
            try:
                now = time.monotonic()
                waited = now - before
                if waited > 0.001:
                    counters.waited_seconds += waited
                    if waited >= WAIT_WARNING_SECONDS:
                        _warn(name, business_id, "waited on limits", f"{waited:.1f} s")
                    if call is not None and hooks is not None:
                        call.waited_seconds += waited
                        for wait_hook in hooks.on_wait:
                            await wait_hook(call, "limits", waited)
                if call is not None and hooks is not None:
                    call.attempts = attempts + 1
                    for hook in hooks.on_request:
                        await hook(call)
                    now = time.monotonic()
                if self.closed or (callers is not None and callers.closed):
                    raise self._closed_error()
                timeout = full_timeout
                if deadline is not None and deadline - now < policy.timeout:
                    if op.idempotent:
                        timeout = aiohttp.ClientTimeout(total=max(deadline - now, 0.001))
                    elif now >= deadline:
                        # A send is never cut short (its fate would be unknown):
                        # it gets its full timeout, or does not go out at all.
                        raise TransportError(
                            f"max_wait of {max_wait:g} s ran out before the send went "
                            "out; nothing was sent",
                            method=name,
                            business_id=business_id,
                        )
            except BaseException:
                await limiter.finish(lease, NOT_SENT, None)
                raise
            # No await from here to the request: nothing can cut in.
            data: Any = body
            if file is not None:
                data = aiohttp.FormData()
                data.add_field("file", file[0], filename=file[1], content_type=file[2])
            attempts += 1
            stats.requests += 1
            counters.requests += 1
            if attempts > 1:
                stats.retries += 1
                counters.retries += 1
            status: int | None = None
            answer_headers = None
            stale = False
            if session is self._pooled:
                _reused.set(False)  # until the connector says otherwise
            sent = time.monotonic()
            try:
                try:
                    # A caller's session may raise for status or follow
                    # redirects (carrying the Api-Key to another host): not here.
                    async with session.request(
                        op.http,
                        url,
                        data=data,
                        headers=headers,
                        timeout=timeout,
                        raise_for_status=False,
                        allow_redirects=False,
                    ) as resp:
                        status = resp.status
                        raw = await resp.read()
                        answer_headers = resp.headers
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    if (
                        session is self._pooled  # only our own reads use it
                        and not isinstance(exc, aiohttp.ClientConnectorError)
                        and _reused.get()
                    ):
                        # The server had closed the pooled connection: the
                        # request never reached it, nor spent its quota.
                        stale = True
                    raise
                finally:  # before any backoff below: a sleeping retry holds no slot
                    reset_in = await limiter.finish(
                        lease, NOT_SENT if stale else status, answer_headers
                    )
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                elapsed = time.monotonic() - sent
                counters.transport_errors += 1
                _log(name, business_id, type(exc).__name__, elapsed)
                if isinstance(exc, aiohttp.ClientResponseError):
                    _hide_secrets(exc)
                if self.closed:
                    what = "" if op.idempotent else "; the server may have acted on the send"
                    raise TransportError(
                        f"this ChatsClient was closed during the request{what}",
                        method=name,
                        business_id=business_id,
                    ) from exc
                if call is not None and hooks is not None:
                    for response_hook in hooks.on_response:
                        await response_hook(call, None, elapsed, exc)
                if stale:
                    # Again at once, on a new connection; not a failure.
                    session = self._fresh_session()
                    if call is not None and hooks is not None:
                        for retry_hook in hooks.on_retry:
                            await retry_hook(call, "stale pooled connection", 0.0)
                    continue
                # Only a connection that never opened certainly did not reach
                # the server; anything later may have been acted on.
                retry = op.idempotent or isinstance(exc, aiohttp.ClientConnectorError)
                if isinstance(exc, aiohttp.InvalidURL):
                    retry = False  # a bad base_url does not get better
                message = _describe(exc)
                if timeout is not full_timeout and isinstance(exc, asyncio.TimeoutError):
                    message = f"max_wait of {max_wait:g} s ran out during the request"
                    retry = False
                    _warn(
                        name, business_id, "timed out", f"no time left in max_wait={max_wait:g} s"
                    )
                error = TransportError(message, method=name, business_id=business_id)
                if not retry or failures >= policy.max_retries:
                    raise error from exc
                failures += 1
                await self._backoff(
                    _CallState(name, business_id, policy, deadline, counters, call),
                    failures,
                    type(exc).__name__,
                    error,
                    exc,
                )
                continue
            elapsed = time.monotonic() - sent
            if session is self._pooled:
                connection = answer_headers.get("Connection")
                if connection is not None and connection.lower() == "close":
                    self._closes += 1
                else:
                    self._closes = self._bypassed = 0
            counters.answered(status, elapsed, answer_headers)
            _log(name, business_id, status, elapsed)
            if call is not None and hooks is not None:
                call.status = status
                for response_hook in hooks.on_response:
                    await response_hook(call, status, elapsed, None)

            if status < 300:
                if decoder is None:
                    _check_send_envelope(raw, status, name, business_id)
                    return None  # sends answer an empty envelope; the status says it all
                try:
                    envelope = decoder.decode(raw)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    error = TransportError(
                        f"unreadable answer ({exc})", method=name, business_id=business_id
                    )
                    if failures >= policy.max_retries:
                        raise error from exc
                    failures += 1
                    await self._backoff(
                        _CallState(name, business_id, policy, deadline, counters, call),
                        failures,
                        "unreadable answer",
                        error,
                        exc,
                    )
                    continue
                if envelope.status == "ERROR":
                    raise error_for_status(
                        status, envelope.errors or [], method=name, business_id=business_id
                    )
                return envelope.result

            api_error = _api_error(status, raw, name, business_id)
            if status == 420:
                stats.rate_limited += 1
                if call is not None:
                    call.rate_limited += 1
                if reset_in > 0:
                    counters.quota_420 += 1
                    assert isinstance(api_error, RateLimitError)
                    api_error.retry_at = dt.datetime.now(_UTC) + dt.timedelta(seconds=reset_in)
                    if limited >= policy.rate_limit_retries or (
                        deadline is not None and time.monotonic() + reset_in > deadline
                    ):
                        _warn(
                            name,
                            business_id,
                            "420, quota spent",
                            f"free again in {reset_in:.1f} s; giving up",
                        )
                        raise api_error
                    limited += 1
                    _warn(
                        name,
                        business_id,
                        "420, quota spent",
                        f"waiting {reset_in:.1f} s for -Until",
                    )
                    continue  # acquire() waits for -Until
                counters.parallel_420 += 1
                if limited >= policy.rate_limit_retries:
                    _warn(name, business_id, _PARALLEL_420, "retries used up; giving up")
                    raise api_error
                limited += 1
                await self._backoff(
                    _CallState(name, business_id, policy, deadline, counters, call),
                    limited,
                    _PARALLEL_420,
                    api_error,
                    None,
                )
                continue
            if status >= 500 and op.idempotent and failures < policy.max_retries:
                failures += 1
                await self._backoff(
                    _CallState(name, business_id, policy, deadline, counters, call),
                    failures,
                    f"HTTP {status}",
                    api_error,
                    None,
                )
                continue
            raise api_error

    # -- helpers ---------------------------------------------------------------

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def _backoff(
        self,
        state: _CallState,
        attempt: int,
        reason: str,
        error: YandexMarketError,
        cause: BaseException | None,
    ) -> None:
        """Sleep before retry number `attempt`, or raise `error` if that passes the deadline."""
        policy = state.policy
        delay = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        if state.deadline is not None and time.monotonic() + delay >= state.deadline:
            _warn(
                state.name,
                state.business_id,
                reason,
                f"no time left in max_wait={policy.max_wait:g} s",
            )
            raise error from cause
        _warn(state.name, state.business_id, reason, f"retry in {delay:.2f} s")
        state.counters.backoff_seconds += delay
        info = state.info
        if info is not None and self.hooks is not None:
            info.waited_seconds += delay
            for hook in self.hooks.on_retry:
                await hook(info, reason, delay)
        await asyncio.sleep(delay)

    def _closed_error(self) -> YandexMarketError:
        if self.closed:
            return YandexMarketError("this ChatsClient is closed")
        return YandexMarketError(
            "the aiohttp session given as session= is closed; nothing was sent"
        )

    @staticmethod
    def _quota_error(
        op: Operation, business_id: int, retry_in: float | None, max_wait: float | None
    ) -> RateLimitError:
        if retry_in is None:
            what = "every parallel-request slot stayed busy"
            retry_at = None
        else:
            what = f"the quota is spent for {retry_in:.1f} s more"
            retry_at = dt.datetime.now(_UTC) + dt.timedelta(seconds=retry_in)
        message = f"{what}, past max_wait={max_wait:g} s; nothing was sent"
        _warn(op.name, business_id, "client-side quota wait", message)
        return RateLimitError(
            420,
            [ApiErrorDetail(code=CLIENT_QUOTA_WAIT, message=message)],
            method=op.name,
            business_id=business_id,
            retry_at=retry_at,
        )


def _own_session(connector: aiohttp.BaseConnector, **options: Any) -> aiohttp.ClientSession:
    """A session of ours, with aiohttp's own silent retry turned off.

    aiohttp (3.14 does) sends an idempotent request (GET) a second time when its
    pooled connection drops; the request loop decides retries itself (counted,
    charged, bounded by ``max_retries``), so that one must not happen behind
    it. aiohttp has no public switch for it (3.14): the attribute is private,
    hence the guard; no upper bound on aiohttp (a pin would fight the user's
    environment): tests/test_keepalive.py fails if a release moves it.
    """
    session = aiohttp.ClientSession(connector=connector, **options)
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


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


def _api_error(status: int, raw: bytes, method: str, business_id: int) -> ApiError:
    try:
        errors = _error_decoder.decode(raw).errors or []
    except (msgspec.DecodeError, msgspec.ValidationError):
        errors = []
    return error_for_status(status, errors, method=method, business_id=business_id)


def _check_send_envelope(raw: bytes, status: int, method: str, business_id: int) -> None:
    """A send's 2xx may still carry ``"status": "ERROR"``: that is a refusal."""
    if not raw:
        return
    try:
        envelope = _error_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return  # no envelope to read; the status says it all
    if envelope.status == "ERROR":
        raise error_for_status(
            status, envelope.errors or [], method=method, business_id=business_id
        )


def _log(method: str, business_id: int, outcome: object, elapsed: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s business=%d -> %s in %.3fs", method, business_id, outcome, elapsed)


def _warn(method: str, business_id: int, what: str, then: str) -> None:
    logger.warning("%s business=%d: %s; %s", method, business_id, what, then)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "request timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
