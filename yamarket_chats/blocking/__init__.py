"""`ChatsClient` for blocking code: scripts, Django views, Celery tasks.

>>> from yamarket_chats.blocking import ChatsClient
>>> with ChatsClient(api_key="ACMA:...") as client:  # doctest: +SKIP
...     for message in client.iter_chat_history(business_id, chat_id):
...         print(message.message_id, message.message)

Why a thread of its own: the async :class:`yamarket_chats.ChatsClient` keeps
a process's rate-limit buckets, parallel-request slots and connection pool,
and they live on one event loop. ``asyncio.run`` per call would start each
call from nothing (a new loop, new buckets, new connections), and cannot run
at all in a thread whose loop is already running. So each facade starts one
daemon thread running one event loop, creates the async client on it, and
every method submits its coroutine there (``asyncio.run_coroutine_threadsafe``)
and waits for the answer. Threads sharing one facade share its limits: their
calls run concurrently on its loop, within them.

The mechanism is one `_runner.Runner` (the loop, its thread, submitting and
waiting, closing) and one page-iterator adapter (`_pages`); each public
method here is a one-line call of the async method of the same name.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._validate import MAX_CHATS_PAGE, MAX_HISTORY_PAGE
from ..client import ChatsClient as AsyncChatsClient
from ..client import _chats_of, _messages_of
from ..errors import YandexMarketError
from ..limits._engine import Engine
from ._pages import PageIterator
from ._runner import FINALIZER_TIMEOUT, OWN_THREAD, Runner, build

if TYPE_CHECKING:
    import aiohttp

    from ..files import FileInput
    from ..hooks import ClientHooks
    from ..limits import Limiter, RateLimit
    from ..models import (
        Chat,
        ChatContext,
        ChatHistoryPage,
        ChatMessage,
        ChatsPage,
        CreateChatResult,
    )
    from ..stats import ClientStats

__all__ = ["ChatsClient", "PageIterator"]


# Options a view leaves as its parent's.
_SAME: Any = object()


class ChatsClient:
    """Blocking client of the chat methods of the Yandex Market Partner API.

    The same constructor and methods as the async :class:`yamarket_chats.ChatsClient`,
    blocking; its iterators are plain iterators. One facade is meant to be
    shared by every thread of a process (it holds the rate-limit buckets and
    parallel-request slots of each business id): use it as
    ``with ChatsClient(...) as client`` or call :meth:`close` at shutdown. A
    facade never closed is closed when garbage-collected or at interpreter exit.

    It starts a daemon thread running an event loop, and the async client is
    made and used there: the parameters are those of
    :class:`yamarket_chats.ChatsClient` (refusals are raised here, before any
    request; left out, the credentials and address come from the
    environment as there). `hooks` run on that thread; a `session` or
    `limiter` of yours is used there too (an aiohttp session must belong to
    that loop, so leave `session` out in blocking code).

    A call made while the calling thread is interrupted (KeyboardInterrupt,
    a signal handler's exception) is cancelled on the loop before the
    exception goes on. Calling the facade from its own loop's thread (from a
    hook) raises `YandexMarketError` instead of waiting on itself, and so does
    a closed facade, or one inherited through ``fork()``.
    """

    _runner: Runner
    _client: AsyncChatsClient
    _owner: ChatsClient | None  # a view's root: it stays alive (and open) while the view is

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
        # The parameters, as given, for the async constructor (the signatures are
        # the same, tests/test_blocking.py holds them so): no list to keep in step.
        options = dict(locals())  # first: nothing but the parameters is bound yet
        del options["self"]
        runner = Runner()
        runner.limiter = limiter if isinstance(limiter, Engine) else None
        try:
            runner.client = runner.run(build(options, runner.limiter))
        except BaseException:
            runner.close()
            raise
        self._runner = runner
        self._client = runner.client
        self._owner = None
        self._finalizer = weakref.finalize(self, runner.close, FINALIZER_TIMEOUT)

    def __repr__(self) -> str:
        return f"blocking.{self._client!r}"

    @property
    def stats(self) -> ClientStats:
        """Counters since the client was made (views included); ``.snapshot()`` for detail.

        The counters are updated on the client's loop thread; read them from any thread.
        """
        return self._client.stats

    def with_options(
        self,
        *,
        timeout: float = _SAME,
        max_retries: int = _SAME,
        max_wait: float | None = _SAME,
    ) -> ChatsClient:
        """A view with other per-call options; see :meth:`yamarket_chats.ChatsClient.with_options`.

        It shares this client's loop thread, session, limits, stats and hooks;
        closing it closes nothing.
        """
        given: dict[str, Any] = {
            "timeout": timeout,
            "max_retries": max_retries,
            "max_wait": max_wait,
        }
        client = self._client.with_options(**{k: v for k, v in given.items() if v is not _SAME})
        view = object.__new__(ChatsClient)
        view._runner, view._client, view._owner = self._runner, client, self._owner or self
        return view

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> ChatsClient:
        if self._owner is None:
            try:
                self._runner.run(self._client.__aenter__())
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the async client, stop the loop and join its thread. Idempotent.

        Calls still running end as on the async client's ``close()``; calls
        made afterwards raise `YandexMarketError`. Closing a `with_options`
        view does nothing: the client it came from owns the thread.
        """
        if self._owner is None:
            if threading.get_ident() == self._runner.ident:
                raise YandexMarketError(OWN_THREAD)
            self._finalizer.detach()
            self._runner.close()

    # -- the operations ------------------------------------------------------

    def create_chat(
        self,
        business_id: int,
        *,
        order_id: int | None = None,
        context: ChatContext | None = None,
    ) -> CreateChatResult:
        """Start a chat about an order or a return, or get the one that exists.

        Blocking :meth:`yamarket_chats.ChatsClient.create_chat`.
        """
        return self._runner.run(
            self._client.create_chat(business_id, order_id=order_id, context=context)
        )

    def get_chats(
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
        """One page of the business's chats, filtered (``limit``: 1..20).

        Blocking :meth:`yamarket_chats.ChatsClient.get_chats`.
        """
        return self._runner.run(
            self._client.get_chats(
                business_id,
                order_ids=order_ids,
                contexts=contexts,
                context_types=context_types,
                types=types,
                statuses=statuses,
                page_token=page_token,
                limit=limit,
            )
        )

    def get_chat(self, business_id: int, chat_id: int) -> Chat:
        """One chat by id. Blocking :meth:`yamarket_chats.ChatsClient.get_chat`."""
        return self._runner.run(self._client.get_chat(business_id, chat_id))

    def get_chat_history(
        self,
        business_id: int,
        chat_id: int,
        *,
        message_id_from: int | None = None,
        page_token: str | None = None,
        limit: int | None = None,
    ) -> ChatHistoryPage:
        """One page of a chat's messages, oldest first (``limit``: 1..100).

        Blocking :meth:`yamarket_chats.ChatsClient.get_chat_history`.
        """
        return self._runner.run(
            self._client.get_chat_history(
                business_id,
                chat_id,
                message_id_from=message_id_from,
                page_token=page_token,
                limit=limit,
            )
        )

    def get_chat_message(self, business_id: int, chat_id: int, message_id: int) -> ChatMessage:
        """One message by id. Blocking :meth:`yamarket_chats.ChatsClient.get_chat_message`."""
        return self._runner.run(self._client.get_chat_message(business_id, chat_id, message_id))

    def send_message_to_chat(self, business_id: int, chat_id: int, message: str) -> None:
        """Send a text message (1..4096 characters). Never sent twice by a retry.

        Blocking :meth:`yamarket_chats.ChatsClient.send_message_to_chat`.
        """
        return self._runner.run(self._client.send_message_to_chat(business_id, chat_id, message))

    def send_file_to_chat(
        self,
        business_id: int,
        chat_id: int,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """Send a file (a path, bytes or a binary file object; 1 byte..5 MiB).

        Blocking :meth:`yamarket_chats.ChatsClient.send_file_to_chat` (a file
        object is read on the client's loop thread).
        """
        return self._runner.run(
            self._client.send_file_to_chat(
                business_id, chat_id, file, filename=filename, content_type=content_type
            )
        )

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
        """Every chat matching the filters; ``.pages()`` for whole pages.

        Blocking :meth:`yamarket_chats.ChatsClient.iter_chats`: a plain iterator.
        """
        walk = self._client.iter_chats(
            business_id,
            order_ids=order_ids,
            contexts=contexts,
            context_types=context_types,
            types=types,
            statuses=statuses,
            page_token=page_token,
            limit=limit,
        )
        return PageIterator(self, walk, _chats_of)

    def iter_chat_history(
        self,
        business_id: int,
        chat_id: int,
        *,
        message_id_from: int | None = None,
        page_token: str | None = None,
        limit: int | None = MAX_HISTORY_PAGE,
    ) -> PageIterator[ChatHistoryPage, ChatMessage]:
        """Every message of a chat, oldest first; ``.pages()`` for whole pages.

        Blocking :meth:`yamarket_chats.ChatsClient.iter_chat_history`: a plain iterator.
        """
        walk = self._client.iter_chat_history(
            business_id,
            chat_id,
            message_id_from=message_id_from,
            page_token=page_token,
            limit=limit,
        )
        return PageIterator(self, walk, _messages_of)
