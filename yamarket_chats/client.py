"""`ChatsClient`: the async session manager over the chat methods."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from .errors import (
    ApiError,
    InvalidRequestError,
    TransportError,
    YandexMarketError,
    error_for_status,
)
from .files import FileInput, read_upload
from .limits import DEFAULT_LIMITS, METHODS, Limiter, Limits, RateLimit
from .models import (
    Chat,
    ChatContext,
    ChatHistoryPage,
    ChatMessage,
    ChatsPage,
    CreateChatResult,
    _ChatsFilter,
    _CreateChatBody,
    _Envelope,
    _ErrorEnvelope,
    _HistoryBody,
    _MessageBody,
)
from .pagination import PageIterator

__all__ = ["ChatsClient", "ClientStats"]

logger = logging.getLogger("yamarket_chats")

T = TypeVar("T")

MAX_MESSAGE_CHARS: Final = 4096
MAX_CHATS_PAGE: Final = 20
MAX_HISTORY_PAGE: Final = 100
# A 420 is waited out rather than counted against max_retries; this only stops
# a server that never lets a request through from holding a task forever.
_MAX_RATE_LIMIT_WAITS: Final = 100

_encode = msgspec.json.Encoder().encode
_error_decoder = msgspec.json.Decoder(_ErrorEnvelope)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(_Envelope[cls])  # type: ignore[valid-type]
    for cls in (Chat, ChatsPage, ChatHistoryPage, ChatMessage, CreateChatResult)
}


@dataclass
class ClientStats:
    """Counters of one client, for progress displays and benchmarks."""

    requests: int = 0  #: HTTP requests sent, retries included
    retries: int = 0  #: requests sent again after a failure or a 420
    rate_limited: int = 0  #: 420 answers received
    waited_seconds: float = 0.0  #: time spent waiting on client-side limits


@dataclass(frozen=True, slots=True)
class _Op:
    name: str
    http: str
    path: str
    # Whether a failure that may have reached the server can be retried: reads
    # and create_chat (which returns the existing chat) can; sends cannot.
    idempotent: bool


_OPS: Final = {
    op.name: op
    for op in (
        _Op("create_chat", "POST", "/chats/new", True),
        _Op("get_chats", "POST", "/chats", True),
        _Op("get_chat", "GET", "/chat", True),
        _Op("get_chat_history", "POST", "/chats/history", True),
        _Op("get_chat_message", "GET", "/chats/message", True),
        _Op("send_message_to_chat", "POST", "/chats/message", False),
        _Op("send_file_to_chat", "POST", "/chats/file/send", False),
    )
}


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _page_limit(value: int | None, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidRequestError(f"limit must be an integer in 1..{maximum}, got {value!r}")
    return value


def _filter(name: str, values: Sequence[T] | None) -> list[T] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise InvalidRequestError(f"{name} must be a list, not a single string")
    items = list(values)
    if not items:
        raise InvalidRequestError(f"{name} must hold at least 1 item; pass None for no filter")
    if len({str(i) if isinstance(i, str) else repr(i) for i in items}) != len(items):
        raise InvalidRequestError(f"{name} must not repeat an item (the API wants unique items)")
    return items


def _check_context(name: str, context: ChatContext) -> None:
    if not isinstance(context, ChatContext):
        raise InvalidRequestError(f"{name} must be a ChatContext, got {type(context).__name__}")
    _positive(f"{name}.id", context.id)
    if context.type not in ("ORDER", "RETURN"):
        raise InvalidRequestError(f"{name}.type must be ORDER or RETURN, got {context.type!r}")


class ChatsClient:
    """Async client of the chat methods of the Yandex Market Partner API.

    One client is meant to be shared by every task of a process: it keeps the
    rate-limit buckets and parallel-request slots of each business id. Use it
    as ``async with ChatsClient(api_key=...) as client`` or call
    :meth:`close` at shutdown.

    :param api_key: an API key, sent as ``Api-Key``.
    :param oauth_token: a legacy OAuth token, sent as ``Authorization: Bearer``.
        Exactly one of the two is required.
    :param base_url: the API's address (a fake server's in tests).
    :param limits: per-method overrides of :data:`DEFAULT_LIMITS`; a method
        mapped to ``None`` has no client-side bucket (the server's own count,
        read from its headers, is still obeyed).
    :param max_concurrency: requests in flight per business id (``None``: no cap).
    :param max_retries: retries of a failed request (5xx, timeout, network);
        ``0`` turns all retrying off, 420 waits included.
    :param timeout: seconds for one request.
    :param session: an ``aiohttp.ClientSession`` the caller owns and closes.
    :param backoff: first retry delay in seconds; it doubles up to `max_backoff`.
    :param limiter: where quotas live instead of this process, e.g. a
        :class:`~yamarket_chats.redis_limits.RedisLimiter` shared by several
        workers (configure its limits and concurrency on it). The caller owns
        it and closes it.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        oauth_token: str | None = None,
        base_url: str = "https://api.partner.market.yandex.ru",
        limits: Mapping[str, RateLimit | None] | None = None,
        max_concurrency: int | None = 4,
        max_retries: int = 5,
        timeout: float = 15.0,
        session: aiohttp.ClientSession | None = None,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        limiter: Limiter | None = None,
    ) -> None:
        if (api_key is None) == (oauth_token is None):
            raise InvalidRequestError("pass exactly one of api_key or oauth_token")
        secret = api_key if api_key is not None else oauth_token
        if not isinstance(secret, str) or not secret.strip():
            raise InvalidRequestError("api_key/oauth_token must be a non-empty string")
        unknown = set(limits or ()) - set(METHODS)
        if unknown:
            raise InvalidRequestError(
                f"limits has unknown method names {sorted(unknown)}; known: {', '.join(METHODS)}"
            )
        if max_concurrency is not None and max_concurrency < 1:
            raise InvalidRequestError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise InvalidRequestError(f"max_retries must be >= 0, got {max_retries}")
        if not timeout > 0:
            raise InvalidRequestError(f"timeout must be > 0 seconds, got {timeout}")
        auth = {"Api-Key": secret} if api_key is not None else {"Authorization": f"Bearer {secret}"}
        # The API does not keep connections alive; saying so up front stops
        # aiohttp from pooling a socket the server is about to close.
        self._headers: Final = {**auth, "Accept": "application/json", "Connection": "close"}
        self._json_headers: Final = {**self._headers, "Content-Type": "application/json"}
        self._base = base_url.rstrip("/") + "/v2/businesses/"
        if limiter is not None and (limits is not None or max_concurrency != 4):
            raise InvalidRequestError(
                "pass limits and max_concurrency to the limiter, not to ChatsClient"
            )
        self._limits: Limiter = (
            limiter
            if limiter is not None
            else Limits({**DEFAULT_LIMITS, **(limits or {})}, max_concurrency)
        )
        self._max_retries = max_retries
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._stats = ClientStats()
        self._auth_kind = "api_key" if api_key is not None else "oauth_token"
        self._base_url = base_url

    def __repr__(self) -> str:
        return f"ChatsClient(base_url={self._base_url!r}, auth={self._auth_kind}=***)"

    @property
    def stats(self) -> ClientStats:
        """Counters of requests, retries, 420s and waits since the client was made."""
        self._stats.waited_seconds = self._limits.waited
        return self._stats

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> ChatsClient:
        await self._limits.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's own session (never a caller's). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise YandexMarketError("this ChatsClient is closed")
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            session = self._session = aiohttp.ClientSession(connector=connector)
        return session

    # -- the request loop ----------------------------------------------------

    async def _call(
        self,
        op: _Op,
        business_id: int,
        query: str,
        decoder: msgspec.json.Decoder[_Envelope[T]] | None,
        body: bytes | None = None,
        file: tuple[bytes, str, str] | None = None,
    ) -> T | None:
        """Send one operation, waiting on limits and retrying per the policy."""
        session = self._get_session()
        url = URL(f"{self._base}{business_id}{op.path}{query}", encoded=True)
        headers = self._headers if body is None else self._json_headers
        limits = self._limits
        stats = self._stats
        failures = rate_limited = 0
        while True:
            lease = await limits.acquire(business_id, op.name)
            data: Any = body
            if file is not None:
                data = aiohttp.FormData()
                data.add_field("file", file[0], filename=file[1], content_type=file[2])
            if failures or rate_limited:
                stats.retries += 1
            stats.requests += 1
            started = asyncio.get_running_loop().time()
            status: int | None = None
            answer_headers = None
            try:
                try:
                    # A caller's session may raise for status or follow
                    # redirects (carrying the Api-Key to another host): not here.
                    async with session.request(
                        op.http,
                        url,
                        data=data,
                        headers=headers,
                        timeout=self._timeout,
                        raise_for_status=False,
                        allow_redirects=False,
                    ) as resp:
                        status = resp.status
                        raw = await resp.read()
                        answer_headers = resp.headers
                finally:  # before any backoff below: a sleeping retry holds no slot
                    reset_in = await limits.finish(lease, status, answer_headers)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self._log(op, business_id, type(exc).__name__, started)
                # Only a connection that never opened certainly did not reach
                # the server; anything later may have been acted on.
                retry = op.idempotent or isinstance(exc, aiohttp.ClientConnectorError)
                if isinstance(exc, aiohttp.InvalidURL):
                    retry = False  # a bad base_url does not get better
                if not retry or failures >= self._max_retries:
                    raise TransportError(
                        _describe(exc), method=op.name, business_id=business_id
                    ) from exc
                failures += 1
                await self._backoff_sleep(failures)
                continue
            self._log(op, business_id, status, started)

            if status < 300:
                if decoder is None:
                    return None  # sends answer an empty envelope; the status says it all
                try:
                    return decoder.decode(raw).result
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    if failures >= self._max_retries:
                        raise TransportError(
                            f"unreadable answer ({exc})", method=op.name, business_id=business_id
                        ) from exc
                    failures += 1
                    await self._backoff_sleep(failures)
                    continue

            error = self._api_error(status, raw, op.name, business_id)
            if status == 420:
                stats.rate_limited += 1
                if self._max_retries == 0 or rate_limited >= _MAX_RATE_LIMIT_WAITS:
                    raise error
                rate_limited += 1
                if reset_in <= 0:
                    # Quota left (the parallel cap, hit by another process
                    # sharing the cabinet) or nothing known: back off. When
                    # the quota is spent, acquire() waits for -Until instead.
                    await self._backoff_sleep(rate_limited)
                continue
            if status >= 500 and op.idempotent and failures < self._max_retries:
                failures += 1
                await self._backoff_sleep(failures)
                continue
            raise error

    async def _backoff_sleep(self, attempt: int) -> None:
        delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
        await asyncio.sleep(delay / 2 + random.uniform(0, delay / 2))

    @staticmethod
    def _api_error(status: int, raw: bytes, method: str, business_id: int) -> ApiError:
        try:
            errors = _error_decoder.decode(raw).errors or []
        except (msgspec.DecodeError, msgspec.ValidationError):
            errors = []
        return error_for_status(status, errors, method=method, business_id=business_id)

    @staticmethod
    def _log(op: _Op, business_id: int, outcome: object, started: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            elapsed = asyncio.get_running_loop().time() - started
            logger.debug("%s business=%d -> %s in %.3fs", op.name, business_id, outcome, elapsed)

    # -- the operations ------------------------------------------------------

    async def create_chat(
        self,
        business_id: int,
        *,
        order_id: int | None = None,
        context: ChatContext | None = None,
    ) -> CreateChatResult:
        """Start a chat about an order or a return, or get the one that exists."""
        _positive("business_id", business_id)
        if (order_id is None) == (context is None):
            raise InvalidRequestError("create_chat needs exactly one of order_id or context")
        if order_id is not None:
            _positive("order_id", order_id)
        if context is not None:
            _check_context("context", context)
        body = _encode(_CreateChatBody(order_id=order_id, context=context))
        return await self._result(_OPS["create_chat"], business_id, "", CreateChatResult, body)

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
        _positive("business_id", business_id)
        body = self._chats_filter(order_ids, contexts, context_types, types, statuses)
        query = _query(None, None, page_token, _page_limit(limit, MAX_CHATS_PAGE))
        return await self._result(_OPS["get_chats"], business_id, query, ChatsPage, body)

    async def get_chat(self, business_id: int, chat_id: int) -> Chat:
        """One chat by id."""
        _positive("business_id", business_id)
        query = _query(_positive("chat_id", chat_id), None, None, None)
        return await self._result(_OPS["get_chat"], business_id, query, Chat)

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
        _positive("business_id", business_id)
        body = self._history_body(message_id_from)
        query = _query(
            _positive("chat_id", chat_id), None, page_token, _page_limit(limit, MAX_HISTORY_PAGE)
        )
        return await self._result(
            _OPS["get_chat_history"], business_id, query, ChatHistoryPage, body
        )

    async def get_chat_message(
        self, business_id: int, chat_id: int, message_id: int
    ) -> ChatMessage:
        """One message by id."""
        _positive("business_id", business_id)
        query = _query(
            _positive("chat_id", chat_id), _positive("message_id", message_id), None, None
        )
        return await self._result(_OPS["get_chat_message"], business_id, query, ChatMessage)

    async def send_message_to_chat(self, business_id: int, chat_id: int, message: str) -> None:
        """Send a text message (1..4096 characters). Never sent twice by a retry."""
        _positive("business_id", business_id)
        query = _query(_positive("chat_id", chat_id), None, None, None)
        if not isinstance(message, str) or not 1 <= len(message) <= MAX_MESSAGE_CHARS:
            size = len(message) if isinstance(message, str) else type(message).__name__
            raise InvalidRequestError(
                f"message must be a string of 1..{MAX_MESSAGE_CHARS} characters, got {size}"
            )
        body = _encode(_MessageBody(message=message))
        await self._call(_OPS["send_message_to_chat"], business_id, query, None, body)

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
        """
        _positive("business_id", business_id)
        query = _query(_positive("chat_id", chat_id), None, None, None)
        upload = await read_upload(file, filename, content_type)
        await self._call(_OPS["send_file_to_chat"], business_id, query, None, file=upload)

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
        _positive("business_id", business_id)
        body = self._chats_filter(order_ids, contexts, context_types, types, statuses)
        limit = _page_limit(limit, MAX_CHATS_PAGE)
        op = _OPS["get_chats"]

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
        _positive("business_id", business_id)
        _positive("chat_id", chat_id)
        body = self._history_body(message_id_from)
        limit = _page_limit(limit, MAX_HISTORY_PAGE)
        op = _OPS["get_chat_history"]

        async def fetch(token: str | None) -> ChatHistoryPage:
            query = _query(chat_id, None, token, limit)
            return await self._result(op, business_id, query, ChatHistoryPage, body)

        return PageIterator(fetch, _messages_of, page_token)

    # -- helpers -------------------------------------------------------------

    async def _result(
        self,
        op: _Op,
        business_id: int,
        query: str,
        model: type[T],
        body: bytes | None = None,
    ) -> T:
        decoder: msgspec.json.Decoder[_Envelope[T]] = _decoders[model]
        result = await self._call(op, business_id, query, decoder, body)
        if result is None:
            raise TransportError("answer without a result", method=op.name, business_id=business_id)
        return result

    @staticmethod
    def _chats_filter(
        order_ids: Sequence[int] | None,
        contexts: Sequence[ChatContext] | None,
        context_types: Sequence[str] | None,
        types: Sequence[str] | None,
        statuses: Sequence[str] | None,
    ) -> bytes:
        ids = _filter("order_ids", order_ids)
        for order_id in ids or ():
            _positive("order_ids item", order_id)
        context_list = _filter("contexts", contexts)
        for context in context_list or ():
            _check_context("contexts item", context)
        return _encode(
            _ChatsFilter(
                order_ids=ids,
                contexts=context_list,
                context_types=_filter("context_types", context_types),
                types=_filter("types", types),
                statuses=_filter("statuses", statuses),
            )
        )

    @staticmethod
    def _history_body(message_id_from: int | None) -> bytes:
        if message_id_from is not None:
            _positive("message_id_from", message_id_from)
        return _encode(_HistoryBody(message_id_from=message_id_from))


def _query(
    chat_id: int | None, message_id: int | None, token: str | None, limit: int | None
) -> str:
    parts = []
    if chat_id is not None:
        parts.append(f"chatId={chat_id}")
    if message_id is not None:
        parts.append(f"messageId={message_id}")
    if token:
        parts.append(f"pageToken={quote(token, safe='')}")
    if limit is not None:
        parts.append(f"limit={limit}")
    return "?" + "&".join(parts) if parts else ""


def _chats_of(page: ChatsPage) -> list[Chat]:
    return page.chats


def _messages_of(page: ChatHistoryPage) -> list[ChatMessage]:
    return page.messages


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "request timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
