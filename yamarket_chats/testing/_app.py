"""The aiohttp application: routing, auth, limits, faults and the seven handlers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ._config import MAX_ID, FakeMarketConfig
from ._connections import ConnectionBook
from ._data import FakeChat, FakeMarket
from ._faults import Fault, Faults, add_extra_fields, replace_enums
from ._journal import Journal, JournalEntry
from ._quota import ParallelGate, QuotaBook
from ._wire import (
    UNIQUE_ITEMS,
    ChatInfo,
    ChatsResult,
    CreateChatRequest,
    CreateChatResult,
    Envelope,
    ErrorDetail,
    GetChatsRequest,
    HistoryRequest,
    HistoryResult,
    Paging,
    SendMessageRequest,
    encoder,
    repeated_items,
)

MAX_FILE_SIZE = 5 * 1024 * 1024
_V2 = "/v2/businesses/{businessId}"
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    420: "LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}
_BODY_TYPES: dict[str, type[msgspec.Struct]] = {
    "create_chat": CreateChatRequest,
    "get_chats": GetChatsRequest,
    "get_chat_history": HistoryRequest,
    "send_message_to_chat": SendMessageRequest,
}


class ApiError(Exception):
    """An error answer in the API's envelope."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _ERROR_CODES[status]
        self.message = message


class _Dropped(Exception):
    """The connection is to be closed without an answer."""


class _Call:
    """What a handler needs about one request."""

    __slots__ = ("body", "business_id", "file", "query")

    def __init__(self, business_id: int, query: Any, body: Any, file: Any) -> None:
        self.business_id = business_id
        self.query = query
        self.body = body
        self.file = file


Handler = Callable[[_Call], Awaitable[msgspec.Struct | None]]

# -- parameters --------------------------------------------------------------


def _int_param(value: str | None, name: str, *, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise ApiError(400, f"Parameter `{name}` is required")
        return default
    number = _lenient_int(value)
    if number is None:
        raise ApiError(400, f"Parameter `{name}` must be an integer >= 1, got {value!r}")
    return number


def _lenient_int(value: str) -> int | None:
    """``value`` as an int64 >= 1 if it is one in ASCII decimal, else ``None``.

    ``str.isdigit`` alone also takes other scripts' digits ("\uff11"), which
    ``int()`` reads but the API's integers never are.
    """
    if not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0")
    if len(digits) > len(str(MAX_ID)):  # also keeps int() off huge strings
        return None
    number = int(digits or "0")
    return number if 1 <= number <= MAX_ID else None


def _limit(query: Any, maximum: int, default: int) -> int:
    limit = _int_param(query.get("limit"), "limit", default=default)
    if limit > maximum:
        raise ApiError(400, f"Parameter `limit` must be between 1 and {maximum}, got {limit}")
    return limit


def _page_token(query: Any) -> str | None:
    token: str | None = query.get("pageToken") or query.get("page_token")
    return token


def _encode_token(scope: int, last_id: int, fingerprint: int) -> str:
    raw = encoder.encode((scope, last_id, fingerprint))
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, scope: int, fingerprint: int) -> int:
    """The last id the previous page returned; 400 unless the token fits this request."""
    try:
        raw = base64.urlsafe_b64decode(token.encode())
        got_scope, last_id, got_fingerprint = msgspec.json.decode(raw, type=tuple[int, int, int])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ApiError(400, "Parameter `pageToken` is invalid") from None
    if got_scope != scope or got_fingerprint != fingerprint:
        raise ApiError(400, "Parameter `pageToken` belongs to another request")
    return last_id


# -- the application -----------------------------------------------------------


class FakeApi:
    """Serves the fake market over HTTP, applying auth, limits and faults."""

    def __init__(
        self,
        config: FakeMarketConfig,
        market: FakeMarket,
        journal: Journal,
        faults: Faults,
    ) -> None:
        self.config = config
        self.market = market
        self.journal = journal
        self.faults = faults
        self.quotas = QuotaBook(config)
        self.gate = ParallelGate(config.max_parallel if config.limits_enabled else None)
        self.connections = ConnectionBook()
        self._resources: dict[str, str] = {}  # operation -> its path in the spec (`build`)
        self._secrets: dict[str, frozenset[int] | None] = {}
        self._secrets.update({f"key:{k}": v for k, v in config.api_keys.items()})
        self._secrets.update({f"bearer:{k}": v for k, v in config.oauth_tokens.items()})

    def build(self) -> web.Application:
        """The aiohttp application (legacy unversioned paths included)."""
        # Above the 5 MiB file limit, so that a too big file gets the API's 400.
        app = web.Application(client_max_size=MAX_FILE_SIZE + 1024 * 1024)
        routes: list[tuple[str, str, str, Handler]] = [
            ("POST", "/chats/new", "create_chat", self._create_chat),
            ("POST", "/chats", "get_chats", self._get_chats),
            ("GET", "/chat", "get_chat", self._get_chat),
            ("POST", "/chats/history", "get_chat_history", self._get_chat_history),
            ("GET", "/chats/message", "get_chat_message", self._get_chat_message),
            ("POST", "/chats/message", "send_message_to_chat", self._send_message),
            ("POST", "/chats/file/send", "send_file_to_chat", self._send_file),
        ]
        for prefix in (_V2, "/businesses/{businessId}"):
            for method, suffix, operation, handler in routes:
                app.router.add_route(method, prefix + suffix, self._endpoint(operation, handler))
        # A quota's 420 names its resource: the operation's path in the spec.
        self._resources = {operation: _V2 + suffix for _, suffix, operation, _ in routes}
        app.router.add_get("/files/{chatId}/{messageId}/{name}", self._download)
        return app

    def _endpoint(
        self, operation: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, operation, handler)

        return endpoint

    # -- the request pipeline ------------------------------------------------------

    async def _serve(
        self, request: web.Request, operation: str, handler: Handler
    ) -> web.StreamResponse:
        entry = JournalEntry(
            method=request.method,
            path=request.path,
            operation=operation,
            business_id=None,
            query=dict(request.query),
            started=time.monotonic(),
            user_agent=request.headers.get("User-Agent"),
        )
        self.journal.append(entry)
        connection = self.connections.request_on(request.transport)
        entry.connection, entry.reused = connection.id, connection.requests > 1
        limit = self.config.max_requests_per_connection
        if limit is not None and connection.requests > limit:
            # This connection counts as closed by the server: the client reused
            # a stale pooled connection and gets no answer.
            entry.fault = "stale_connection"
            entry.finished = time.monotonic()
            return self._drop(request)
        business_id: int | None = None
        admitted = False
        window: int | None = None
        fault: Fault | None = None
        try:
            try:
                business_id = self._authorize(request)
                entry.business_id = business_id
                if not self.gate.enter(business_id):
                    raise ApiError(420, self.gate.refusal(business_id))
                admitted = True
                window = self._take_quota(business_id, operation)
                body, file = await self._read_body(request, operation, entry)
                fault = self.faults.pick(operation)
                if fault is not None:
                    entry.fault = fault.kind
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.kind in ("status_500", "status_503"):
                        raise ApiError(int(fault.kind[-3:]), "Fake server fault")
                    if fault.kind == "drop":
                        raise _Dropped
                call = _Call(business_id, request.query, body, file)
                result = await handler(call)
                if fault is not None and fault.kind == "status_500_after":
                    raise ApiError(500, "Fake server fault")
                if fault is not None and fault.kind == "drop_after":
                    raise _Dropped
                status, payload = 200, encoder.encode(Envelope("OK", result))
            except ApiError as error:
                detail = ErrorDetail(error.code, error.message)
                status, payload = error.status, encoder.encode(Envelope("ERROR", errors=[detail]))
        except _Dropped:
            if window is not None and business_id is not None:
                self.quotas.refund(business_id, operation, window)
            entry.finished = time.monotonic()
            return self._drop(request)
        finally:
            if admitted and business_id is not None:
                self.gate.leave(business_id)
        entry.status = status
        if status >= 500 and window is not None and business_id is not None:
            self.quotas.refund(business_id, operation, window)
        response = web.Response(body=payload, status=status, content_type="application/json")
        if business_id is None:  # 401/403/400 before the business was checked
            business_id = _lenient_int(request.match_info["businessId"])
        if self.config.limits_enabled and business_id is not None:
            response.headers.update(self.quotas.headers(business_id, operation))
        if not self.config.keep_alive:
            response.force_close()
        entry.finished = time.monotonic()
        if status == 200 and fault is not None:
            return await self._spoil(request, response, payload, fault)
        return response

    def _take_quota(self, business_id: int, operation: str) -> int | None:
        """Count the request in its quota window (returned); 420 when the quota is spent."""
        if not self.config.limits_enabled:
            return None
        window = self.quotas.take(business_id, operation)
        if window is None:
            resource = self._resources[operation]
            raise ApiError(420, self.quotas.refusal(business_id, operation, resource))
        return window

    def _authorize(self, request: web.Request) -> int:
        """The business id of the request, once the credentials allow it."""
        key = request.headers.get("Api-Key")
        authorization = request.headers.get("Authorization", "")
        if key is not None:
            secret = f"key:{key}"
        elif authorization.startswith("Bearer ") and len(authorization) > 7:
            secret = f"bearer:{authorization[7:]}"
        else:
            raise ApiError(401, "Authorization required: pass Api-Key or Authorization: Bearer")
        if secret not in self._secrets:
            raise ApiError(403, "Invalid API key or OAuth token")
        business_id = _int_param(request.match_info["businessId"], "businessId")
        allowed = self._secrets[secret]
        if business_id not in (self.market.businesses if allowed is None else allowed):
            raise ApiError(403, f"Access denied to business {business_id}")
        return business_id

    async def _read_body(
        self, request: web.Request, operation: str, entry: JournalEntry
    ) -> tuple[Any, tuple[str, str, bytes] | None]:
        """The decoded body (validated against the spec) and, for uploads, the file."""
        if operation == "send_file_to_chat":
            file = await self._read_file(request, entry)
            return None, file
        body_type = _BODY_TYPES.get(operation)
        if body_type is None:
            return None, None
        raw = await request.read()
        if not raw.strip():  # every JSON operation's requestBody is required
            raise ApiError(400, "Request body is required (a JSON object)")
        try:
            entry.body = msgspec.json.decode(raw)
            body = msgspec.json.decode(raw, type=body_type)
        except msgspec.DecodeError as error:
            raise ApiError(400, f"Invalid request body: {error}") from None
        repeated = repeated_items(entry.body, UNIQUE_ITEMS.get(operation, ()))
        if repeated is not None:
            raise ApiError(400, f"Invalid request body: items of `$.{repeated}` must be unique")
        return body, None

    async def _read_file(self, request: web.Request, entry: JournalEntry) -> tuple[str, str, bytes]:
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(400, "Field `file` is larger than 5 MiB") from None
        except (ValueError, HttpProcessingError) as error:
            raise ApiError(400, f"Invalid multipart body: {error}") from None
        field = form.get("file")
        if isinstance(field, web.FileField):
            # aiohttp (quote_fields=True) and browsers percent-encode non-ASCII names.
            name = unquote(field.filename) or "file"
            content_type, content = field.content_type, field.file.read()
        elif isinstance(field, str):
            name, content_type, content = "file", "text/plain", field.encode()
        else:
            raise ApiError(400, "Field `file` is required")
        entry.body = {
            "file": {"filename": name, "size": len(content), "content_type": content_type}
        }
        if len(content) > MAX_FILE_SIZE:
            raise ApiError(400, "Field `file` is larger than 5 MiB")
        return name, content_type, content

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        response = web.Response()
        response.force_close()
        return response

    async def _spoil(
        self, request: web.Request, response: web.Response, payload: bytes, fault: Fault
    ) -> web.StreamResponse:
        """Apply a fault that damages a successful answer."""
        kind = fault.kind
        if kind == "invalid_json":
            response.body = b"<html><body>502 Bad Gateway</body></html>"
        elif kind == "body":
            response.body = fault.body
        elif kind in ("extra_fields", "unknown_enum"):
            document = msgspec.json.decode(payload)
            if "result" in document:
                change = add_extra_fields if kind == "extra_fields" else replace_enums
                document["result"] = change(document["result"])
            response.body = encoder.encode(document)
        elif kind == "truncate":
            stream = web.StreamResponse(status=200, headers=response.headers)
            stream.content_length = len(payload)
            stream.force_close()
            await stream.prepare(request)
            await stream.write(payload[: len(payload) // 2])
            if request.transport is not None:
                request.transport.close()
            return stream
        return response

    # -- handlers --------------------------------------------------------------------

    def _chat(self, call: _Call) -> FakeChat:
        chat_id = _int_param(call.query.get("chatId"), "chatId")
        try:
            return self.market.get_chat(call.business_id, chat_id)
        except KeyError:
            raise ApiError(404, f"Chat {chat_id} not found") from None

    async def _create_chat(self, call: _Call) -> CreateChatResult:
        body: CreateChatRequest = call.body
        # The spec allows both fields together; `context` (orderId is deprecated) wins.
        if not isinstance(body.context, msgspec.UnsetType):
            kind, context_id = body.context.type, body.context.id
        elif not isinstance(body.order_id, msgspec.UnsetType):
            kind, context_id = "ORDER", body.order_id
        else:
            # The schema requires neither field, but there is nothing to start a chat about.
            raise ApiError(400, "Field `context` (or `orderId`) is required")
        if not self.market.holds(call.business_id, kind, context_id):
            # As the real API: no chat about an order or return the business does not have.
            raise ApiError(404, f"{kind.capitalize()} {context_id} not found")
        chat_id = self.market.find_or_create_chat(call.business_id, kind, context_id)
        return CreateChatResult(chat_id=chat_id)

    async def _get_chats(self, call: _Call) -> ChatsResult:
        body: GetChatsRequest = call.body
        limit = _limit(call.query, 20, 10)
        fingerprint = zlib.crc32(encoder.encode(body))
        token = _page_token(call.query)
        after = 0 if token is None else _decode_token(token, call.business_id, fingerprint)
        order_ids = set(body.order_ids or ())
        contexts: set[tuple[str, int]] = {(c.type, c.id) for c in body.contexts or ()}
        chats: list[ChatInfo] = []
        last: FakeChat | None = None
        for chat in self.market.chats(call.business_id):
            if chat.chat_id <= after or not _matches(chat, body, order_ids, contexts):
                continue
            if len(chats) == limit:
                assert last is not None
                next_token = _encode_token(call.business_id, last.chat_id, fingerprint)
                return ChatsResult(chats=chats, paging=Paging(next_page_token=next_token))
            chats.append(chat.info())
            last = chat
        return ChatsResult(chats=chats, paging=Paging())

    async def _get_chat(self, call: _Call) -> msgspec.Struct:
        return self._chat(call).info()

    async def _get_chat_history(self, call: _Call) -> HistoryResult:
        chat = self._chat(call)
        body: HistoryRequest = call.body
        limit = _limit(call.query, 100, 50)
        message_id_from = None if body.message_id_from is msgspec.UNSET else body.message_id_from
        fingerprint = message_id_from or 0
        token = _page_token(call.query)
        if token is not None:
            start = chat.position(_decode_token(token, chat.chat_id, fingerprint) + 1)
        elif message_id_from is not None:
            start = chat.position(message_id_from)
        else:
            start = 0
        stop = min(start + limit, chat.message_count)
        messages = self.market.page(chat, start, stop)
        paging = Paging()
        if stop < chat.message_count:
            last_id = messages[-1].message_id
            paging = Paging(next_page_token=_encode_token(chat.chat_id, last_id, fingerprint))
        return HistoryResult(
            order_id=chat.order_id, context=chat.context(), messages=messages, paging=paging
        )

    async def _get_chat_message(self, call: _Call) -> msgspec.Struct:
        chat = self._chat(call)
        message_id = _int_param(call.query.get("messageId"), "messageId")
        try:
            return self.market.get_message(call.business_id, chat.chat_id, message_id)
        except KeyError:
            raise ApiError(404, f"Message {message_id} not found") from None

    async def _send_message(self, call: _Call) -> None:
        chat = self._chat(call)
        body: SendMessageRequest = call.body
        self.market.add_message(call.business_id, chat.chat_id, body.message, sender="PARTNER")

    async def _send_file(self, call: _Call) -> None:
        chat = self._chat(call)
        name, _content_type, content = call.file
        self.market.add_message(
            call.business_id, chat.chat_id, sender="PARTNER", payload=[(name, content)]
        )

    async def _download(self, request: web.Request) -> web.Response:
        try:
            chat_id = int(request.match_info["chatId"])
            message_id = int(request.match_info["messageId"])
        except ValueError:
            raise web.HTTPNotFound() from None
        content = self.market.file(chat_id, message_id, request.match_info["name"])
        if content is None:
            raise web.HTTPNotFound()
        return web.Response(body=content, content_type="application/octet-stream")


def _matches(
    chat: FakeChat,
    body: GetChatsRequest,
    order_ids: set[int],
    contexts: set[tuple[str, int]],
) -> bool:
    """Whether a chat passes the ``getChats`` filters (all given filters must hold)."""
    if order_ids and chat.order_id not in order_ids:
        return False
    if contexts:
        context_id = chat.return_id if chat.context_type == "RETURN" else chat.order_id
        if (chat.context_type, context_id) not in contexts:
            return False
    if body.context_types and chat.context_type not in body.context_types:
        return False
    if body.types and chat.type not in body.types:
        return False
    return not (body.statuses and chat.status not in body.statuses)
