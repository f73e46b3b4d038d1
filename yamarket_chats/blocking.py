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

The mechanism is one `_Runner` (the loop, its thread, submitting and
waiting, closing) and one page-iterator adapter; each public method is a
one-line call of the async method of the same name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast

from ._validate import MAX_CHATS_PAGE, MAX_HISTORY_PAGE
from .client import ChatsClient as AsyncChatsClient
from .errors import YandexMarketError
from .limits._engine import Engine
from .pagination import PageIterator as AsyncPageIterator

if TYPE_CHECKING:
    import aiohttp

    from .files import FileInput
    from .hooks import ClientHooks
    from .limits import Limiter, RateLimit
    from .models import (
        Chat,
        ChatContext,
        ChatHistoryPage,
        ChatMessage,
        ChatsPage,
        CreateChatResult,
    )
    from .stats import ClientStats

__all__ = ["ChatsClient", "PageIterator"]

T = TypeVar("T")
P = TypeVar("P")

#: Seconds the finalizer of a facade never closed (garbage-collected, or
#: still open at interpreter exit) waits for the async client to close and
#: for the thread to end.
_FINALIZER_TIMEOUT: Final = 10.0

_CLOSED: Final = "this blocking ChatsClient is closed"
_FORKED: Final = (
    "this blocking ChatsClient was created in another process, before a fork: its "
    "event-loop thread did not come along; create the client in this process (Celery "
    "prefork: in a worker_process_init handler, or on first use in the task)"
)
_OWN_THREAD: Final = (
    "a blocking ChatsClient was called from its own event-loop thread (from a hook?): it "
    "would wait on itself. Code running on that loop must not call the blocking client"
)

_names = itertools.count(1)


class _Runner:
    """One event loop on a daemon thread: runs coroutines for callers on other threads.

    Shared by a facade and its views; it never refers to them, so a facade
    that nobody holds is garbage-collected and its finalizer closes this.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: AsyncChatsClient | None = None  # the root async client, once made
        self.limiter: Engine[Any] | None = None  # a limiter given: started and closed here
        # Why calls are refused (closed, forked), or None. Set under _lock, so
        # nothing is submitted once closing began.
        self.refusal: str | None = None
        self._lock = threading.RLock()  # re-entrant: a finalizer may run inside `run`
        self._close_lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(
            target=_serve,
            args=(self.loop,),
            name=f"yamarket_chats.blocking-{next(_names)}",
            daemon=True,  # a facade never closed must not hold up the interpreter's exit
        )
        try:
            self._thread.start()
        except BaseException:  # no thread to be had: no loop left open either
            self.loop.close()
            raise
        self.ident = self._thread.ident
        _RUNNERS.add(self)

    def check(self) -> None:
        """Raise if a call cannot be made now (closed, forked, or on the loop's own thread)."""
        refusal = self.refusal
        if refusal is None and threading.get_ident() == self.ident:
            refusal = _OWN_THREAD
        if refusal is not None:
            raise YandexMarketError(refusal)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (its exception, as raised there).

        If the wait is interrupted (KeyboardInterrupt, a signal handler's
        exception such as Celery's soft time limit), the coroutine is
        cancelled and its end waited for before the exception goes on,
        wherever the interruption lands: `_Call` is made before anything is
        scheduled, and its `abandon` runs on the loop after its `start`.
        """
        call: _Call[T] | None = None
        try:
            with self._lock:
                try:
                    self.check()
                except BaseException:
                    coro.close()  # never started: no "never awaited" warning
                    raise
                call = _Call(coro, self.loop)
                self._schedule(call.start)
            return call.future.result()
        except concurrent.futures.CancelledError:
            if self.refusal is None:
                raise  # the coroutine cancelled itself
            # Not by this caller (it cancels only below): the loop shut down under it.
            raise YandexMarketError(f"{_CLOSED} (closed while the call ran)") from None
        except BaseException:
            if call is None:
                coro.close()  # interrupted before anything was scheduled
            elif not call.future.done():
                with contextlib.suppress(YandexMarketError):  # the loop is gone: nothing runs
                    self._schedule(call.abandon)
                    while not call.future.done() and self._thread.is_alive():
                        concurrent.futures.wait([call.future], 0.5)
            raise

    def _schedule(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop soon (in the order scheduled)."""
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: its thread ended without close()
            raise YandexMarketError(f"{_CLOSED} (its event-loop thread has ended)") from None

    def discard(self, agen: AsyncGenerator[Any, None]) -> None:
        """Close a walk's async generator on the loop: at once, or soon from the loop's thread."""
        if self.refusal is not None:
            return  # the loop's shutdown closed it (or, forked, it is not ours to close)
        if threading.get_ident() == self.ident:  # garbage-collected on the loop thread
            asyncio.run_coroutine_threadsafe(_aclose(agen), self.loop)
            return
        try:
            self.run(_aclose(agen))
        except YandexMarketError:
            if self.refusal is None:
                raise  # the generator's own error, not a close that came meanwhile

    def close(self, timeout: float | None = None) -> None:
        """Close the async client, stop the loop and join the thread. Idempotent.

        `timeout` bounds each of the two waits (``None``: no bound).
        """
        with self._lock:
            if self.refusal is None:
                self.refusal = _CLOSED
        if threading.get_ident() == self.ident:
            self._close_soon()
            return
        with self._close_lock:
            if self._stopped:
                return
            try:
                if self._thread.is_alive():
                    closing = asyncio.run_coroutine_threadsafe(
                        _shut(self.client, self.limiter), self.loop
                    )
                    closing.result(timeout)
            except concurrent.futures.TimeoutError:
                pass  # the loop's shutdown, below, cancels what is left
            finally:
                if self._thread.is_alive():
                    self.loop.call_soon_threadsafe(self.loop.stop)
                    self._thread.join(timeout)
                self._stopped = True

    def _close_soon(self) -> None:
        """Close from the loop's own thread (a finalizer run there): schedule it, no waiting."""
        if not self._stopped and not self.loop.is_closed():
            self._stopped = True
            asyncio.run_coroutine_threadsafe(_close_and_stop(self, self.loop), self.loop)

    def forked(self) -> None:
        """In a child process after fork(): the thread is gone; refuse calls, close nothing."""
        self._lock = threading.RLock()
        self._close_lock = threading.Lock()
        self.refusal = _FORKED
        self._stopped = True


#: Every live runner, for the fork handler.
_RUNNERS: weakref.WeakSet[_Runner] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for runner in list(_RUNNERS):
        runner.forked()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The thread: run the loop until stopped, then end what is left as ``asyncio.run`` does."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


class _Call(Generic[T]):
    """One coroutine run on the loop for a caller on another thread.

    `start` and `abandon` run on the loop, in the order the caller scheduled
    them: an abandoned call that has not started never starts (its coroutine
    is closed), one that has is cancelled. `future` ends either way.
    """

    def __init__(self, coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> None:
        self.coro = coro
        self.loop = loop
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.task: asyncio.Task[T] | None = None
        self.abandoned = False

    def start(self) -> None:
        if self.abandoned:
            return
        self.task = self.loop.create_task(self.coro)
        self.task.add_done_callback(self._done)

    def abandon(self) -> None:
        if self.task is not None:
            self.task.cancel()
        elif not self.abandoned:
            self.abandoned = True
            self.coro.close()
            self.future.cancel()

    def _done(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self.future.cancel()
        elif task.exception() is not None:
            self.future.set_exception(task.exception())
        else:
            self.future.set_result(task.result())


async def _build(options: dict[str, Any], limiter: Engine[Any] | None) -> AsyncChatsClient:
    """The async client, made on the loop that will run it; a limiter given is started
    there (blocking code cannot run its ``async with``), as `_shut` closes it."""
    client = AsyncChatsClient(**options)
    if limiter is not None:
        await limiter.start()
    return client


async def _shut(client: AsyncChatsClient | None, limiter: Engine[Any] | None) -> None:
    """Close the async client, then the limiter given (its queued finishes are sent)."""
    try:
        if client is not None:
            await client.close()
    finally:
        if limiter is not None:
            await limiter.close()


async def _next_page(pages: AsyncGenerator[P, None]) -> P | None:
    """The next page of a walk, or ``None`` at its end (pages are never ``None``)."""
    try:
        return await pages.__anext__()
    except StopAsyncIteration:
        return None


async def _aclose(agen: AsyncGenerator[Any, None]) -> None:
    await agen.aclose()


async def _close_and_stop(runner: _Runner, loop: asyncio.AbstractEventLoop) -> None:
    try:
        await _shut(runner.client, runner.limiter)
    finally:
        loop.stop()


class PageIterator(Generic[P, T]):
    """Every page of a listing, blocking: ``for item in it`` or ``for page in it.pages()``.

    The blocking form of :class:`yamarket_chats.PageIterator`, with the same
    guarantees (each item once, in server order; memory flat; a failed page
    raises with ``.page_token`` set). Each page is one call on the client's
    loop; its items are then yielded here. Each ``iter()`` starts a new walk.

    Leaving a ``for`` early closes the walk's async generator on the loop as
    soon as the iterator is dropped (at once in CPython); call ``.close()`` on
    the iterator, or use ``contextlib.closing``, to close it at a point of
    your choosing.
    """

    def __init__(
        self,
        client: ChatsClient,
        walk: AsyncPageIterator[Any, T],
        items: Callable[[P], Sequence[T]],
    ) -> None:
        runner = client._runner
        runner.check()  # a closed client fails here, not at the first page
        # Held, so that `for chat in ChatsClient().iter_chats(...)` (the client
        # itself dropped at once) is not closed by its finalizer mid-walk.
        self._client = client
        self._runner = runner
        self._walk = walk
        self._items = items

    def pages(self) -> Generator[P, None, None]:
        """Yield whole pages, starting from the `page_token` given, if any."""
        runner = self._runner
        pages = cast("AsyncGenerator[P, None]", self._walk.pages())
        ended = False
        try:
            while True:
                page = runner.run(_next_page(pages))
                if page is None:
                    ended = True
                    return
                yield page
        finally:
            if not ended:
                runner.discard(pages)

    def __iter__(self) -> Generator[T, None, None]:
        pages = self.pages()
        try:
            for page in pages:
                yield from self._items(page)
        finally:
            pages.close()


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

    _runner: _Runner
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
        options = dict(
            api_key=api_key,
            oauth_token=oauth_token,
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
            hooks=hooks,
        )
        if base_url is None:  # the async client's own default (the environment's, or production)
            del options["base_url"]
        runner = _Runner()
        runner.limiter = limiter if isinstance(limiter, Engine) else None
        try:
            runner.client = runner.run(_build(options, runner.limiter))
        except BaseException:
            runner.close()
            raise
        self._runner = runner
        self._client = runner.client
        self._owner = None
        self._finalizer = weakref.finalize(self, runner.close, _FINALIZER_TIMEOUT)

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
                raise YandexMarketError(_OWN_THREAD)
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


def _chats_of(page: ChatsPage) -> list[Chat]:
    return page.chats


def _messages_of(page: ChatHistoryPage) -> list[ChatMessage]:
    return page.messages
