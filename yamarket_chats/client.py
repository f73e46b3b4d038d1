"""`ChatsClient`: the async session manager over the chat methods."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from . import _environ, _validate
from ._closing import AsyncClosing
from ._operations import OPERATIONS, Operation
from ._transport.loop import Transport
from ._transport.retry import Policy
from ._validate import MAX_CHATS_PAGE, MAX_HISTORY_PAGE
from .errors import InvalidRequestError
from .files import FileInput, read_upload
from .hooks import ClientHooks
from .limits import DEFAULT_LIMITS, Limiter, Limits, RateLimit
from .models import (
    Chat,
    ChatContext,
    ChatHistoryPage,
    ChatMessage,
    ChatsPage,
    CreateChatResult,
    _Envelope,
)
from .pagination import PageIterator
from .stats import ClientStats

__all__ = ["ChatsClient", "ClientStats"]


T = TypeVar("T")

_encode = msgspec.json.Encoder().encode
# One decoder per result model of the table, made once.
_decoders: Final[dict[type[Any], msgspec.json.Decoder[Any]]] = {
    op.result: msgspec.json.Decoder(_Envelope[op.result])  # type: ignore[name-defined]
    for op in OPERATIONS.values()
    if op.result is not None
}

# Options a view leaves as its parent's.
_SAME: Any = object()


class ChatsClient(AsyncClosing):
    """Async client of the chat methods of the Yandex Market Partner API.

    One client is meant to be shared by every task of a process: it keeps the
    rate-limit buckets and parallel-request slots of each business id. Use it
    as ``async with ChatsClient(api_key=...) as client`` or call
    :meth:`close` at shutdown.

    :param api_key: an API key, sent as ``Api-Key``.
    :param oauth_token: a legacy OAuth token, sent as ``Authorization: Bearer``.
        At most one of the two: 1..4096 visible ASCII characters (a key read
        from a file with its trailing newline is refused). With neither, the
        environment's ``YANDEX_MARKET_API_KEY`` is used, else its
        ``YANDEX_MARKET_OAUTH_TOKEN``.
    :param base_url: the API's address, an ``http(s)://`` URL (a fake server's
        in tests); by default the environment's ``YANDEX_MARKET_BASE_URL``,
        else ``https://api.partner.market.yandex.ru``.
    :param limits: per-method overrides of :data:`DEFAULT_LIMITS`; a method
        mapped to ``None`` has no client-side bucket (the server's own count,
        read from its headers, is still obeyed).
    :param max_concurrency: requests in flight per business id (``None``: no cap).
    :param max_retries: retries of a failed request (5xx, timeout, network);
        ``0`` turns all retrying off, 420 waits included.
    :param timeout: seconds for one request.
    :param session: an ``aiohttp.ClientSession`` the caller owns and closes.
        Reads use it as configured; sends never take one of its pooled
        connections (when its connector pools, they go through a force-close
        copy of its settings that the client makes and closes).
    :param backoff: first retry delay in seconds; it doubles up to `max_backoff`.
    :param limiter: where quotas live instead of this process, e.g. a
        :class:`~yamarket_chats.redis_limits.RedisLimiter` shared by several
        workers (configure its limits and concurrency on it). The caller owns
        it and closes it.
    :param max_wait: seconds one call may take in all: waits for quota and
        slots, attempts and backoffs (``None``: no bound, for bulk jobs). A
        call that cannot finish in time raises at once rather than sleeping
        in vain: `RateLimitError` (with ``retry_at``) for a quota or slot
        wait, `TransportError` or the last error when attempts ran out of time.
        A send that went out is never cut short: it has its full `timeout`.
    :param keep_alive: let reads reuse pooled connections when the server
        allows it; sends always go on a fresh connection. ``False``: every
        request opens and closes its own connection. (A caller's `session`
        is used as configured.)
    :param hooks: a :class:`~yamarket_chats.hooks.ClientHooks` (or a list of
        them) told of every operation, request, retry and wait, e.g.
        :class:`~yamarket_chats.otel.TracingHooks`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        oauth_token: str | None = None,
        base_url: str | None = None,
        limits: Mapping[str, RateLimit | None] | None = None,
        max_concurrency: int | None = 4,
        max_retries: int = 5,
        timeout: float = 15.0,
        session: aiohttp.ClientSession | None = None,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        limiter: Limiter | None = None,
        max_wait: float | None = 60.0,
        keep_alive: bool = True,
        hooks: ClientHooks | Sequence[ClientHooks] | None = None,
    ) -> None:
        self._auth_kind, secret = _environ.credentials(api_key, oauth_token)
        base_url = _environ.base_url(base_url)
        _validate.client_options(
            base_url=base_url,
            limits=limits,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
            session=session,
            backoff=backoff,
            max_backoff=max_backoff,
            limiter=limiter,
            max_wait=max_wait,
            keep_alive=keep_alive,
        )
        auth = (
            {"Api-Key": secret}
            if self._auth_kind == "api_key"
            else {"Authorization": f"Bearer {secret}"}
        )
        self._base = _validate.base_url(base_url) + "/v2/businesses/"
        if limiter is not None and (limits is not None or max_concurrency != 4):
            raise InvalidRequestError(
                "pass limits and max_concurrency to the limiter, not to ChatsClient"
            )
        self._limits: Limiter = (
            limiter
            if limiter is not None
            else Limits({**DEFAULT_LIMITS, **(limits or {})}, max_concurrency)
        )
        self._policy = Policy(timeout, max_retries, max_wait, backoff, max_backoff)
        self._transport = Transport(
            auth=auth,
            base=self._base,
            limiter=self._limits,
            session=session,
            keep_alive=keep_alive,
            hooks=hooks,
        )
        self._is_view = False
        self._base_url = base_url

    def __repr__(self) -> str:
        return f"ChatsClient(base_url={self._base_url!r}, auth={self._auth_kind}=***)"

    @property
    def stats(self) -> ClientStats:
        """Counters since the client was made (views included); ``.snapshot()`` for detail."""
        return self._transport.stats

    def with_options(
        self,
        *,
        timeout: float = _SAME,
        max_retries: int = _SAME,
        max_wait: float | None = _SAME,
    ) -> ChatsClient:
        """A view of this client with other per-call options, e.g. for a web handler.

        The view shares the session, limits, stats and hooks of this client
        (no second bucket, no second connection pool), costs next to nothing
        to make, and closing it closes nothing. Options left out stay as they are.
        """
        changes: dict[str, Any] = {}
        if timeout is not _SAME:
            changes["timeout"] = _validate.timeout(timeout)
        if max_retries is not _SAME:
            changes["max_retries"] = _validate.retries(max_retries)
        if max_wait is not _SAME:
            changes["max_wait"] = _validate.max_wait(max_wait)
        view = copy.copy(self)
        view._policy = dataclasses.replace(self._policy, **changes)
        view._is_view = True
        return view

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> ChatsClient:
        if not self._is_view:
            await self._limits.start()
        return self

    async def close(self) -> None:
        """Close the client's own sessions (never a caller's). Idempotent.

        Closing a `with_options` view does nothing: the client it came from
        owns the sessions.
        """
        if not self._is_view:
            await self._transport.close()

    def _call(
        self,
        op: Operation,
        business_id: int,
        query: str,
        decoder: msgspec.json.Decoder[_Envelope[T]] | None,
        body: bytes | None = None,
        file: tuple[bytes, str, str] | None = None,
    ) -> Coroutine[Any, Any, T | None]:
        """Send one operation under this client's (or view's) options (await it)."""
        # Not a coroutine of its own: one frame less on every request.
        return self._transport.call(op, self._policy, business_id, query, decoder, body, file)

    # -- the operations ------------------------------------------------------

    async def create_chat(
        self,
        business_id: int,
        *,
        order_id: int | None = None,
        context: ChatContext | None = None,
    ) -> CreateChatResult:
        """Start a chat about an order or a return, or get the one that exists.

        Pass `context` (an order or a return), the deprecated `order_id`, or
        both as the spec allows; at least one is required.
        """
        business_id = _validate.positive_id("business_id", business_id)
        body = _encode(_validate.create_chat_body(order_id, context))
        return await self._result(
            OPERATIONS["create_chat"], business_id, "", CreateChatResult, body
        )

    async def get_chats(
        self,
        business_id: int,
        *,
        order_ids: Sequence[int] | None = None,
        contexts: Sequence[ChatContext] | None = None,
        context_types: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        page_token: str | None = None,
        limit: int | None = None,
    ) -> ChatsPage:
        """One page of the business's chats, filtered (``limit``: 1..20)."""
        business_id = _validate.positive_id("business_id", business_id)
        body = _encode(_validate.chats_filter(order_ids, contexts, context_types, types, statuses))
        query = _query(
            None,
            None,
            _validate.page_token(page_token),
            _validate.page_limit(limit, MAX_CHATS_PAGE),
        )
        return await self._result(OPERATIONS["get_chats"], business_id, query, ChatsPage, body)

    async def get_chat(self, business_id: int, chat_id: int) -> Chat:
        """One chat by id."""
        business_id = _validate.positive_id("business_id", business_id)
        query = _query(_validate.positive_id("chat_id", chat_id), None, None, None)
        return await self._result(OPERATIONS["get_chat"], business_id, query, Chat)

    async def get_chat_history(
        self,
        business_id: int,
        chat_id: int,
        *,
        message_id_from: int | None = None,
        page_token: str | None = None,
        limit: int | None = None,
    ) -> ChatHistoryPage:
        """One page of a chat's messages, oldest first (``limit``: 1..100)."""
        business_id = _validate.positive_id("business_id", business_id)
        query = _query(
            _validate.positive_id("chat_id", chat_id),
            None,
            _validate.page_token(page_token),
            _validate.page_limit(limit, MAX_HISTORY_PAGE),
        )
        body = _encode(_validate.history_body(message_id_from))
        return await self._result(
            OPERATIONS["get_chat_history"], business_id, query, ChatHistoryPage, body
        )

    async def get_chat_message(
        self, business_id: int, chat_id: int, message_id: int
    ) -> ChatMessage:
        """One message by id."""
        business_id = _validate.positive_id("business_id", business_id)
        query = _query(
            _validate.positive_id("chat_id", chat_id),
            _validate.positive_id("message_id", message_id),
            None,
            None,
        )
        return await self._result(OPERATIONS["get_chat_message"], business_id, query, ChatMessage)

    async def send_message_to_chat(self, business_id: int, chat_id: int, message: str) -> None:
        """Send a text message (1..4096 characters). Never sent twice by a retry."""
        business_id = _validate.positive_id("business_id", business_id)
        query = _query(_validate.positive_id("chat_id", chat_id), None, None, None)
        body = _encode(_validate.message(message))
        await self._call(OPERATIONS["send_message_to_chat"], business_id, query, None, body)

    async def send_file_to_chat(
        self,
        business_id: int,
        chat_id: int,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """Send a file (a path, bytes or a binary file object; 1 byte..5 MiB).

        The size is checked before any request; never sent twice by a retry.
        A path to a pipe is read until its writer closes it; a pipe that no
        writer has open is refused at once rather than waited on.
        """
        business_id = _validate.positive_id("business_id", business_id)
        query = _query(_validate.positive_id("chat_id", chat_id), None, None, None)
        upload = await read_upload(file, filename, content_type)
        await self._call(OPERATIONS["send_file_to_chat"], business_id, query, None, file=upload)

    # -- iterators -----------------------------------------------------------

    def iter_chats(
        self,
        business_id: int,
        *,
        order_ids: Sequence[int] | None = None,
        contexts: Sequence[ChatContext] | None = None,
        context_types: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        page_token: str | None = None,
        limit: int | None = MAX_CHATS_PAGE,
    ) -> PageIterator[ChatsPage, Chat]:
        """Every chat matching the filters; ``.pages()`` for whole pages."""
        business_id = _validate.positive_id("business_id", business_id)
        body = _encode(_validate.chats_filter(order_ids, contexts, context_types, types, statuses))
        limit = _validate.page_limit(limit, MAX_CHATS_PAGE)
        page_token = _validate.page_token(page_token)
        op = OPERATIONS["get_chats"]

        async def fetch(token: str | None) -> ChatsPage:
            query = _query(None, None, token, limit)
            return await self._result(op, business_id, query, ChatsPage, body)

        return PageIterator(fetch, _chats_of, page_token)

    def iter_chat_history(
        self,
        business_id: int,
        chat_id: int,
        *,
        message_id_from: int | None = None,
        page_token: str | None = None,
        limit: int | None = MAX_HISTORY_PAGE,
    ) -> PageIterator[ChatHistoryPage, ChatMessage]:
        """Every message of a chat, oldest first; ``.pages()`` for whole pages."""
        business_id = _validate.positive_id("business_id", business_id)
        chat_id = _validate.positive_id("chat_id", chat_id)
        body = _encode(_validate.history_body(message_id_from))
        limit = _validate.page_limit(limit, MAX_HISTORY_PAGE)
        page_token = _validate.page_token(page_token)
        op = OPERATIONS["get_chat_history"]

        async def fetch(token: str | None) -> ChatHistoryPage:
            query = _query(chat_id, None, token, limit)
            return await self._result(op, business_id, query, ChatHistoryPage, body)

        return PageIterator(fetch, _messages_of, page_token)

    # -- helpers -------------------------------------------------------------

    async def _result(
        self,
        op: Operation,
        business_id: int,
        query: str,
        model: type[T],
        body: bytes | None = None,
    ) -> T:
        decoder: msgspec.json.Decoder[_Envelope[T]] = _decoders[model]
        result = await self._call(op, business_id, query, decoder, body)
        # The request loop raises ResponseDecodeError for an OK envelope without its result.
        assert result is not None
        return result


def _quote_token(token: str) -> str:
    """``quote(token, safe="")``, 15x cheaper for letters and digits with ``=`` padding."""
    body = token.rstrip("=")
    if body.isascii() and body.isalnum():
        padding = len(token) - len(body)
        return body + "%3D" * padding if padding else token
    return quote(token, safe="")


def _query(
    chat_id: int | None, message_id: int | None, token: str | None, limit: int | None
) -> str:
    parts = []
    if chat_id is not None:
        parts.append(f"chatId={chat_id}")
    if message_id is not None:
        parts.append(f"messageId={message_id}")
    if token:
        parts.append(f"pageToken={_quote_token(token)}")
    if limit is not None:
        parts.append(f"limit={limit}")
    return "?" + "&".join(parts) if parts else ""


def _chats_of(page: ChatsPage) -> list[Chat]:
    return page.chats


def _messages_of(page: ChatHistoryPage) -> list[ChatMessage]:
    return page.messages
