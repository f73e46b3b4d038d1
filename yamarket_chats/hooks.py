"""Request hooks: the one channel through which every operation, attempt, retry and wait is told.

Pass ``ChatsClient(..., hooks=MyHooks())`` (or a list of them). A hook object
has any of the methods of :class:`ClientHooks`; subclass it and override the
ones you need. Each is an ``async def`` awaited inline by the request loop, in
the task that made the call (so ``contextvars`` such as the current
OpenTelemetry span carry over from ``on_start`` to ``on_end``); keep them
quick, and do not raise from them: an exception from a hook ends the call with
it (before the request went out: nothing sent, slot and quota given back), and
``on_end`` still runs for every hook.

The client's own counters (``client.stats``) are a built-in hook on these same
events, told first; users' hooks follow in the order given. Only methods a
hook overrides are called, so with no hooks of the user's the loop calls the
stats' alone.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequestError

__all__ = ["CallInfo", "ClientHooks"]


@dataclass(slots=True)
class CallInfo:
    """One operation of the client (a page of a walk is one), as hooks see it.

    The request loop updates it as the call goes; ``data`` is free for hooks
    to keep their own state in (e.g. a span) between ``on_start`` and ``on_end``.
    """

    method: str  #: the operation, e.g. ``"get_chat_history"``
    business_id: int
    max_wait: float | None  #: the call's deadline in seconds from ``started``
    attempts: int = 0  #: HTTP requests sent so far
    rate_limited: int = 0  #: 420 answers so far
    waited_seconds: float = 0.0  #: on limits and backoffs so far
    status: int | None = None  #: the last HTTP status (``None``: no answer yet)
    #: the last answer's headers (``X-RateLimit-Resource-*`` among them)
    headers: Mapping[str, str] | None = None
    #: what the last attempt came to: ``"ok"``, ``"420, quota spent"``,
    #: ``"420, quota left (parallel cap)"``, ``"5xx"``, ``"no answer"``... (set
    #: before ``on_response``)
    outcome: str | None = None
    error: BaseException | None = None  #: what the call raised (set before ``on_end``)
    data: dict[str, Any] = field(default_factory=dict)
    # When the call began (time.time(): the datetime is made only when asked for).
    _started: float = field(default_factory=time.time, init=False, repr=False, compare=False)
    # The built-in stats' counters of this call's (business, method), found once.
    _counters: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def started(self) -> dt.datetime:
        """When the call began (aware UTC)."""
        return dt.datetime.fromtimestamp(self._started, dt.timezone.utc)


class ClientHooks:
    """No-op hooks: subclass and override what you need (all are optional)."""

    async def on_start(self, call: CallInfo) -> None:
        """An operation begins (before any wait)."""

    async def on_request(self, call: CallInfo) -> None:
        """A request is about to be sent; ``call.attempts`` is its number (1-based)."""

    async def on_response(
        self, call: CallInfo, status: int | None, seconds: float, error: BaseException | None
    ) -> None:
        """A request ended: its status (``None`` and ``error`` set when no answer came)."""

    async def on_retry(self, call: CallInfo, reason: str, delay: float) -> None:
        """The call will send again after sleeping ``delay`` seconds, because of ``reason``."""

    async def on_wait(self, call: CallInfo, reason: str, seconds: float) -> None:
        """The call waited ``seconds`` on client-side limits (buckets, ``-Until``, slots)."""

    async def on_end(self, call: CallInfo) -> None:
        """The operation ended; ``call.error`` is what it raised, if anything."""


_NAMES = ("on_start", "on_request", "on_response", "on_retry", "on_wait", "on_end")


_Hook = Callable[..., Awaitable[None]]


class HookSet:
    """The hooks of one client, grouped by event; only overridden ones are kept."""

    on_start: tuple[_Hook, ...]
    on_request: tuple[_Hook, ...]
    on_response: tuple[_Hook, ...]
    on_retry: tuple[_Hook, ...]
    on_wait: tuple[_Hook, ...]
    on_end: tuple[_Hook, ...]

    def __init__(self, hooks: Sequence[object]) -> None:
        for hook in hooks:
            if not isinstance(hook, ClientHooks) and not any(hasattr(hook, n) for n in _NAMES):
                raise InvalidRequestError(
                    f"hooks takes ClientHooks objects (with any of {', '.join(_NAMES)}),"
                    f" got {type(hook).__name__}"
                )
        for name in _NAMES:
            found: list[_Hook] = []
            for hook in hooks:
                method = getattr(hook, name, None)
                if method is None or getattr(method, "__func__", None) is getattr(
                    ClientHooks, name
                ):
                    continue  # absent, or ClientHooks' own no-op
                if not inspect.iscoroutinefunction(method):
                    raise InvalidRequestError(
                        f"hooks: {type(hook).__name__}.{name} must be an async def"
                    )
                found.append(method)
            setattr(self, name, tuple(found))

    @staticmethod
    def build(hooks: object | Sequence[object] | None) -> HookSet | None:
        """A `HookSet` of the user's hooks, or ``None`` when there is nothing to call."""
        if hooks is None:
            return None
        items = list(hooks) if isinstance(hooks, (list, tuple)) else [hooks]
        built = HookSet(items)
        return built if any(getattr(built, name) for name in _NAMES) else None
