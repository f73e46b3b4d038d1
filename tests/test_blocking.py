"""`yamarket_chats.blocking.ChatsClient` against the fake, from plain (non-async) code.

The fake runs on an event loop of its own in a background thread
(`ThreadedFake`), so that the test's thread is free to block as a script, a
Django view or a Celery task does. Every test waits on conditions (events,
the fake's in-flight count, thread joins), never on sleeps; each one ends
with no thread of a facade left running and no warning or asyncio error logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import inspect
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import pytest

from tests.conftest import BUSINESS, FAST
from yamarket_chats import (
    Chat,
    ChatContext,
    ChatContextIdentifiableType,
    ChatMessage,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    TransportError,
    YandexMarketError,
)
from yamarket_chats.blocking import ChatsClient, PageIterator
from yamarket_chats.client import ChatsClient as AsyncChatsClient
from yamarket_chats.hooks import CallInfo, ClientHooks
from yamarket_chats.pagination import PageIterator as AsyncPageIterator
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
WAIT = 30.0  # seconds a condition may take before the test fails (never slept)

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning", "error::ResourceWarning")


# -- the fake on a thread of its own -------------------------------------------


@dataclass
class ThreadedFake:
    """A fake Market served by an event loop on a background thread."""

    server: FakeServer
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the fake's loop (e.g. ``server.wait_in_flight``) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    @property
    def chat_id(self) -> int:
        return self.server.market.chats(BUSINESS)[0].chat_id


@contextlib.contextmanager
def threaded_fake(config: FakeMarketConfig) -> Iterator[ThreadedFake]:
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = box["stop"] = asyncio.Event()
        async with run_fake_server(config) as server:
            box["fake"] = ThreadedFake(server, asyncio.get_running_loop())
            ready.set()
            await stop.wait()

    # asyncio.run: what the fake leaves running at the end (a handler still
    # sleeping out a latency fault) is cancelled and awaited, then the loop closed.
    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(WAIT), "the fake did not start"
    fake: ThreadedFake = box["fake"]
    try:
        yield fake
    finally:
        fake.loop.call_soon_threadsafe(box["stop"].set)
        thread.join(WAIT)
        assert not thread.is_alive()


@pytest.fixture
def served() -> Iterator[ThreadedFake]:
    config = FakeMarketConfig(
        businesses=(BUSINESS, 2002), chats_per_business=5, messages_per_chat=230
    )
    with threaded_fake(config) as fake:
        yield fake


def facade_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("yamarket_chats.blocking-")}


@pytest.fixture(autouse=True)
def clean_end(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every facade a test made is closed (its thread gone), and asyncio logged nothing.

    Requested first, so it checks after the other fixtures have closed theirs.
    """
    caplog.set_level(logging.WARNING, logger="asyncio")
    before = facade_threads()
    yield
    gc.collect()  # a walk or facade left in a reference cycle is finalized now
    assert facade_threads() <= before, "a blocking client's thread is still running"
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert not records, [r.getMessage() for r in records]  # e.g. "Task was destroyed..."


@pytest.fixture
def make(served: ThreadedFake) -> Iterator[Callable[..., ChatsClient]]:
    """Build blocking clients against `served`; all are closed at teardown."""
    made: list[ChatsClient] = []

    def make(**kwargs: Any) -> ChatsClient:
        options: dict[str, Any] = {"api_key": served.server.api_key, "base_url": served.server.url}
        client = ChatsClient(**{**options, **FAST, **kwargs})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def open_walks() -> list[Any]:
    """The page walks (async generators of `PageIterator.pages`) started and not closed."""
    code = AsyncPageIterator.pages.__code__
    return [
        o
        for o in gc.get_objects()
        if inspect.isasyncgen(o) and o.ag_code is code and o.ag_frame is not None
    ]


# -- reading and writing -----------------------------------------------------------


def test_reads_chats_and_a_history_from_plain_code(served: ThreadedFake) -> None:
    market = served.server.market
    with ChatsClient(api_key=served.server.api_key, base_url=served.server.url) as client:
        chats = list(client.iter_chats(BUSINESS, limit=2))
        assert [c.chat_id for c in chats] == [c.chat_id for c in market.chats(BUSINESS)]
        assert all(isinstance(c, Chat) for c in chats)
        history = list(client.iter_chat_history(BUSINESS, chats[0].chat_id))
        expected = [m.message_id for m in market.messages(BUSINESS, chats[0].chat_id)]
        assert [m.message_id for m in history] == expected and len(expected) == 230
    assert len(served.server.journal.entries("get_chat_history")) == 3  # pages of 100


def test_every_method(
    served: ThreadedFake, make: Callable[..., ChatsClient], tmp_path: Path
) -> None:
    client = make()
    market, chat_id = served.server.market, served.chat_id
    page = client.get_chats(BUSINESS, limit=2)
    assert len(page.chats) == 2 and page.paging and page.paging.next_page_token
    assert client.get_chat(BUSINESS, chat_id).chat_id == chat_id
    history = client.get_chat_history(BUSINESS, chat_id, limit=10)
    assert len(history.messages) == 10
    one = client.get_chat_message(BUSINESS, chat_id, history.messages[3].message_id)
    assert isinstance(one, ChatMessage) and one.message_id == history.messages[3].message_id
    with_order = next(c for c in market.chats(BUSINESS) if c.order_id is not None)
    assert with_order.order_id is not None
    context = ChatContext(type=ChatContextIdentifiableType.ORDER, id=with_order.order_id)
    assert client.create_chat(BUSINESS, context=context).chat_id == with_order.chat_id
    before = market.message_count(BUSINESS, chat_id)
    client.send_message_to_chat(BUSINESS, chat_id, "Здравствуйте!")
    path = tmp_path / "invoice.pdf"
    path.write_bytes(b"%PDF-1.4 invoice")
    client.send_file_to_chat(BUSINESS, chat_id, path)
    client.send_file_to_chat(BUSINESS, chat_id, b"data", filename="a.txt")
    assert market.message_count(BUSINESS, chat_id) == before + 3
    pages = list(client.iter_chat_history(BUSINESS, chat_id, limit=50).pages())
    assert [len(p.messages) for p in pages] == [50, 50, 50, 50, 33]
    token = pages[1].paging.next_page_token if pages[1].paging else None
    resumed = client.iter_chat_history(BUSINESS, chat_id, page_token=token)
    assert next(iter(resumed)).message_id == pages[2].messages[0].message_id
    assert [p.chats[0].chat_id for p in client.iter_chats(BUSINESS, limit=4).pages()] == [
        market.chats(BUSINESS)[0].chat_id,
        market.chats(BUSINESS)[4].chat_id,
    ]
    assert client.stats.requests == len(served.server.journal)
    assert {op.method for op in client.stats.snapshot().operations} >= {"get_chat", "create_chat"}


def test_views_share_the_thread_and_outlive_their_root(served: ThreadedFake) -> None:
    root = ChatsClient(
        api_key=served.server.api_key, base_url=served.server.url, backoff=0.01, max_backoff=0.05
    )
    (thread,) = facade_threads()
    view = root.with_options(max_retries=0, timeout=5)
    served.server.faults.add("status_500", times=1)
    with pytest.raises(ServerError):
        view.get_chat(BUSINESS, served.chat_id)  # the view does not retry
    served.server.faults.add("status_500", times=1)
    assert root.get_chat(BUSINESS, served.chat_id).chat_id == served.chat_id  # the root does
    assert view.stats is root.stats and root.stats.retries == 1
    view.close()  # a view's close closes nothing
    with view as same:
        assert same is view
    del root
    gc.collect()
    assert thread.is_alive()  # the view keeps its root, and its loop, alive
    assert view.get_chat(BUSINESS, served.chat_id).chat_id == served.chat_id
    del view, same
    gc.collect()  # the last reference gone: the finalizer closes the client and joins
    assert not thread.is_alive()


# -- iterators ----------------------------------------------------------------------


def test_leaving_a_walk_early_closes_it_on_the_loop(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    client = make()
    for _ in client.iter_chat_history(BUSINESS, served.chat_id, limit=10):
        break
    assert open_walks() == []  # closed at the break, not at some later collection
    walk = iter(client.iter_chats(BUSINESS, limit=1))
    assert next(walk).chat_id == served.chat_id
    assert len(open_walks()) == 1
    del walk  # dropped mid-walk
    assert open_walks() == []
    pages = client.iter_chat_history(BUSINESS, served.chat_id, limit=10).pages()
    next(pages)
    pages.close()
    assert open_walks() == []
    with contextlib.closing(iter(client.iter_chats(BUSINESS, limit=1))) as chats:
        next(chats)
    assert open_walks() == []
    # A walk left open when its client closes is closed by the loop's shutdown.
    left = iter(client.iter_chats(BUSINESS, limit=1))
    next(left)
    client.close()
    assert open_walks() == []
    del left  # and dropping it afterwards is quiet


def test_a_failed_page_raises_its_type_with_the_token_to_resume(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    client = make(max_retries=0)
    walk = client.iter_chat_history(BUSINESS, served.chat_id, limit=100)
    seen: list[ChatMessage] = []
    served.server.faults.add("status_503", times=1, operations={"get_chat_history"})
    with pytest.raises(ServerError) as info:
        seen.extend(walk)  # the first page fails
    assert info.value.page_token is None
    it = iter(walk)
    seen = [next(it) for _ in range(100)]
    served.server.faults.add("drop", times=1, operations={"get_chat_history"})
    with pytest.raises(TransportError) as dropped:
        next(it)
    token = dropped.value.page_token
    assert token
    rest = list(client.iter_chat_history(BUSINESS, served.chat_id, page_token=token))
    ids = [m.message_id for m in served.server.market.messages(BUSINESS, served.chat_id)]
    assert [m.message_id for m in seen + rest] == ids
    assert open_walks() == []


# -- errors ----------------------------------------------------------------------


def _frames(exc: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


def test_errors_keep_their_types_and_tracebacks(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    client = make(max_retries=0, limits={"get_chat": None})
    with pytest.raises(NotFoundError) as missing:
        client.get_chat(BUSINESS, 999_999_999)
    assert missing.value.status == 404 and missing.value.method == "get_chat"
    frames = _frames(missing.value)
    # The caller's frame first, then the frames it ran through on the loop.
    assert frames[0] == "test_errors_keep_their_types_and_tracebacks"
    assert "get_chat" in frames and "_send" in frames
    with pytest.raises(InvalidRequestError, match="business_id"):
        client.get_chat(0, 1)  # refused on the loop, before any request
    with pytest.raises(InvalidRequestError, match="limit"):
        client.iter_chats(BUSINESS, limit=1000)  # refused here, at once
    served.server.faults.add("drop", times=1)
    with pytest.raises(TransportError) as dropped:
        client.get_chat(BUSINESS, served.chat_id)
    assert dropped.value.__cause__ is not None
    served.server.faults.add("status_500", times=1)
    with pytest.raises(ServerError):
        client.get_chat(BUSINESS, served.chat_id)
    stranger = make(api_key="ACMA:very-secret-key-123")
    with pytest.raises(ForbiddenError) as forbidden:
        stranger.get_chat(BUSINESS, served.chat_id)
    assert "very-secret" not in str(forbidden.value) + repr(stranger)
    assert len(served.server.journal) == 4  # no request for the refused arguments


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "YANDEX_MARKET_API_KEY"),  # the suite's conftest clears the variables
        ({"api_key": "a", "oauth_token": "b"}, "exactly one"),
        ({"api_key": "a", "base_url": "ftp://example.com"}, "base_url"),
        ({"api_key": "a", "max_concurrency": 0}, "max_concurrency"),
        ({"api_key": "a", "timeout": -1}, "timeout"),
        ({"api_key": "a", "hooks": object()}, "hooks"),
        ({"api_key": "a\n"}, "api_key"),
    ],
)
def test_construction_refusals_come_before_any_thread_is_left(
    served: ThreadedFake, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        ChatsClient(**options)
    assert len(served.server.journal) == 0  # clean_end checks no thread was left


def test_the_environment_flows_through_to_the_async_constructor(
    served: ThreadedFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YANDEX_MARKET_API_KEY", served.server.api_key)
    monkeypatch.setenv("YANDEX_MARKET_BASE_URL", served.server.url)
    with ChatsClient() as client:
        assert client.get_chat(BUSINESS, served.chat_id).chat_id == served.chat_id
        assert served.server.url in repr(client)


def test_repr_reuses_the_async_one_and_hides_the_secret(served: ThreadedFake) -> None:
    secret = "ACMA:very-secret-key-123"
    with ChatsClient(api_key=secret, base_url=served.server.url) as client:
        text = repr(client)
    assert text == f"blocking.ChatsClient(base_url={served.server.url!r}, auth=api_key=***)"
    assert secret not in text and "very-secret" not in repr(client.with_options(timeout=1))


def test_same_constructor_and_methods_as_the_async_client() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(ChatsClient) == public(AsyncChatsClient)
    for name in ["__init__", *sorted(public(AsyncChatsClient) - {"stats"})]:
        ours = inspect.signature(getattr(ChatsClient, name))
        theirs = inspect.signature(getattr(AsyncChatsClient, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        for param, other in zip(ours.parameters.values(), theirs.parameters.values(), strict=True):
            assert (param.kind, str(param.annotation)) == (other.kind, str(other.annotation))
            if name != "with_options":  # there, both defaults are "unchanged" markers
                assert param.default == other.default, (name, param.name)
        if not name.startswith(("iter_", "__")):
            assert ours.return_annotation == theirs.return_annotation, name
        assert name == "__init__" or getattr(ChatsClient, name).__doc__, name
    assert "PageIterator" in str(inspect.signature(ChatsClient.iter_chats).return_annotation)
    assert PageIterator.__doc__


# -- threads and loops ------------------------------------------------------------


class Gate(ClientHooks):
    """Holds every request at ``on_request`` until opened; counts the holders."""

    def __init__(self) -> None:
        self.held = 0
        self.threads: set[str] = set()
        self.changed = threading.Condition()
        self._open: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def on_request(self, call: CallInfo) -> None:
        if self._open is None:
            self._loop, self._open = asyncio.get_running_loop(), asyncio.Event()
        self.threads.add(threading.current_thread().name)
        with self.changed:
            self.held += 1
            self.changed.notify_all()
        await self._open.wait()

    def wait_held(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.held >= count, WAIT), self.held

    def open(self) -> None:
        assert self._loop is not None and self._open is not None
        self._loop.call_soon_threadsafe(self._open.set)


def test_threads_share_one_facade_within_its_limits(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    gate = Gate()
    client = make(max_concurrency=2, limits={"get_chat": None}, hooks=gate)
    chat_ids = [c.chat_id for c in served.server.market.chats(BUSINESS)]
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = client.get_chat(BUSINESS, chat_ids[i % len(chat_ids)]).chat_id
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    gate.wait_held(2)  # two threads' calls in flight at once, on the one loop
    gate.open()
    for thread in threads:
        thread.join(WAIT)
    assert not errors and not any(t.is_alive() for t in threads)
    assert results == {i: chat_ids[i % len(chat_ids)] for i in range(12)}
    assert gate.held == 12 and len(gate.threads) == 1  # every call ran on the facade's thread
    assert gate.threads <= {t.name for t in facade_threads()}
    assert served.server.peak_parallel[BUSINESS] <= 2  # the client's cap held across threads


async def test_works_inside_a_thread_that_runs_an_event_loop(served: ThreadedFake) -> None:
    # As in an async Django view or a notebook cell: this thread's loop is running.
    client = ChatsClient(api_key=served.server.api_key, base_url=served.server.url)
    try:
        assert client.get_chat(BUSINESS, served.chat_id).chat_id == served.chat_id
        chats = await asyncio.to_thread(lambda: list(client.iter_chats(BUSINESS)))
        assert len(chats) == 5
    finally:
        await asyncio.to_thread(client.close)


def test_calls_from_its_own_loop_thread_raise_instead_of_waiting(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    refused: list[BaseException] = []

    class CallsBack(ClientHooks):
        client: ChatsClient

        async def on_start(self, call: CallInfo) -> None:
            for attempt in (
                lambda: self.client.get_chats(BUSINESS),
                lambda: self.client.iter_chats(BUSINESS),
                self.client.close,
            ):
                try:
                    attempt()
                except YandexMarketError as exc:
                    refused.append(exc)

    hook = CallsBack()
    client = hook.client = make(hooks=hook)
    assert client.get_chat(BUSINESS, served.chat_id).chat_id == served.chat_id
    assert len(refused) == 3
    assert all("its own event-loop thread" in str(exc) for exc in refused)
    assert client.get_chats(BUSINESS).chats  # still open
    refused.clear()  # the refused coroutines were closed: no "never awaited" warning
    gc.collect()


def test_the_callers_context_variables_reach_the_hooks(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
    seen: list[str] = []

    class Reads(ClientHooks):
        async def on_start(self, call: CallInfo) -> None:
            seen.append(request_id.get())

    client = make(hooks=Reads())

    def handler(name: str) -> None:  # e.g. a Django view with its request's id set
        request_id.set(name)
        client.get_chats(BUSINESS)

    threads = [threading.Thread(target=handler, args=(f"r{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    client.get_chats(BUSINESS)
    assert sorted(seen) == ["-", "r0", "r1", "r2"]


# -- closing --------------------------------------------------------------------


def test_close_stops_the_thread_and_is_idempotent(served: ThreadedFake) -> None:
    before = facade_threads()
    client = ChatsClient(api_key=served.server.api_key, base_url=served.server.url)
    (thread,) = facade_threads() - before
    assert thread.daemon
    walk = iter(client.iter_chats(BUSINESS, limit=1))
    next(walk)  # the next item needs the next page
    view = client.with_options(timeout=3)
    client.close()
    assert not thread.is_alive() and thread not in threading.enumerate()
    client.close()  # again: nothing to do
    for use in (
        lambda: client.get_chats(BUSINESS),
        lambda: client.iter_chats(BUSINESS),
        lambda: next(walk),
        lambda: view.get_chat(BUSINESS, served.chat_id),
        client.__enter__,
    ):
        with pytest.raises(YandexMarketError, match="blocking ChatsClient is closed"):
            use()
    with ChatsClient(api_key=served.server.api_key, base_url=served.server.url) as other:
        (thread,) = facade_threads() - before
    assert not thread.is_alive()
    with pytest.raises(YandexMarketError, match="closed"):
        other.get_chats(BUSINESS)


def test_closing_ends_the_calls_of_other_threads(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    client = make(limits={"get_chat": None})
    served.server.faults.add("latency", delay=60, times=2)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.get_chat(BUSINESS, served.chat_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    served.call(served.server.wait_in_flight(BUSINESS, 2))
    client.close()
    for thread in threads:
        thread.join(WAIT)
    assert len(errors) == 2 and all(isinstance(e, YandexMarketError) for e in errors), errors


def test_a_facade_dropped_without_close_stops_its_thread(served: ThreadedFake) -> None:
    before = facade_threads()
    client = ChatsClient(api_key=served.server.api_key, base_url=served.server.url)
    (thread,) = facade_threads() - before
    walk = iter(client.iter_chats(BUSINESS, limit=1))
    next(walk)
    del client, walk
    gc.collect()
    assert not thread.is_alive()


def _run_script(code: str, served: ThreadedFake, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,  # measured by make test's coverage: exit, GC and fork happen only here
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "FAKE_URL": served.server.url,
        "FAKE_KEY": served.server.api_key,
        "CHAT_ID": str(served.chat_id),
    }
    return subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_iterator_keeps_its_client_open_while_held(served: ThreadedFake) -> None:
    """`ChatsClient().iter_chats(...)` in one expression: the client itself is dropped
    at once, and its finalizer must not close it under the walk."""
    options: dict[str, Any] = {"api_key": served.server.api_key, "base_url": served.server.url}
    chats = ChatsClient(**options).iter_chats(BUSINESS, limit=2)
    gc.collect()
    assert len([chat.chat_id for chat in chats]) == 5  # three pages, the client still open
    del chats
    gc.collect()
    for thread in facade_threads():  # the last reference gone: the finalizer closes it
        thread.join(WAIT)
    assert not facade_threads()


def test_a_redis_limiter_given_is_started_and_closed_on_the_facades_loop(
    served: ThreadedFake,
) -> None:
    """Blocking code cannot run the limiter's `async with`: the facade does, so that
    its queued finishes reach Redis (the parallel slots are free at once)."""
    import redis

    from tests.servers import RedisServer, free_port
    from yamarket_chats.redis_limits import QuotaBackendError, RedisLimiter

    server = RedisServer()
    server.start()
    try:
        limiter = RedisLimiter(server.url, prefix="blocking", lease_seconds=60)
        options: dict[str, Any] = {"api_key": served.server.api_key, "base_url": served.server.url}
        with ChatsClient(**options, limiter=limiter) as client:
            assert len(client.get_chats(BUSINESS).chats) == 5
        probe = redis.Redis.from_url(server.url)
        try:  # released now, not when the 60 s lease runs out
            assert probe.zcard(f"blocking:{{{BUSINESS}}}:slots") == 0
            assert len(probe.client_list()) == 1  # the probe alone: the limiter's pool is closed
        finally:
            probe.close()
        with pytest.raises(QuotaBackendError):  # a Redis that does not answer: at once
            ChatsClient(**options, limiter=RedisLimiter(f"redis://127.0.0.1:{free_port()}"))
    finally:
        server.stop()


def test_an_open_facade_does_not_hold_up_interpreter_exit(served: ThreadedFake) -> None:
    done = _run_script(
        """
        import os
        from yamarket_chats.blocking import ChatsClient

        client = ChatsClient(api_key=os.environ["FAKE_KEY"], base_url=os.environ["FAKE_URL"])
        walk = iter(client.iter_chat_history(1001, int(os.environ["CHAT_ID"]), limit=10))
        next(walk)  # a walk left open too
        print("read", client.get_chats(1001).chats[0].chat_id)
        """,
        served,
        "-W",
        "always",  # any warning at exit (unclosed session, loop, socket) shows on stderr
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("read ") and done.stderr == ""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_is_told_to_make_its_own(served: ThreadedFake) -> None:
    done = _run_script(
        """
        import os
        from yamarket_chats import YandexMarketError
        from yamarket_chats.blocking import ChatsClient

        client = ChatsClient(api_key=os.environ["FAKE_KEY"], base_url=os.environ["FAKE_URL"])
        client.get_chats(1001)
        pid = os.fork()
        if pid == 0:  # as a Celery prefork worker inheriting a client made at import
            try:
                client.get_chats(1001)
            except YandexMarketError as exc:
                os._exit(0 if "before a fork" in str(exc) else 2)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print("parent", len(client.get_chats(1001).chats))
        client.close()
        """,
        served,
        "-W",
        "ignore::DeprecationWarning",  # 3.12+: fork() with threads running
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["child", "0", "parent", "5"], done.stdout + done.stderr


# -- interrupted while blocked ----------------------------------------------------


class SoftTimeLimit(Exception):
    """What Celery's soft time limit raises, from a signal handler, in the waiting thread."""


def _soft_limit(signum: int, frame: FrameType | None) -> None:
    raise SoftTimeLimit


@pytest.mark.parametrize(
    ("signum", "handler", "raised"),
    [
        (signal.SIGINT, signal.default_int_handler, KeyboardInterrupt),
        (getattr(signal, "SIGUSR1", None), _soft_limit, SoftTimeLimit),
    ],
    ids=["KeyboardInterrupt", "soft-time-limit"],
)
def test_an_interrupted_wait_cancels_the_call_on_the_loop(
    served: ThreadedFake,
    make: Callable[..., ChatsClient],
    signum: int | None,
    handler: Any,
    raised: type[BaseException],
) -> None:
    if threading.current_thread() is not threading.main_thread() or signum is None:
        pytest.skip("signals reach the main thread only (and SIGUSR1 is POSIX)")
    ended: list[BaseException | None] = []

    class Ends(ClientHooks):
        async def on_end(self, call: CallInfo) -> None:
            ended.append(call.error)

    client = make(hooks=Ends(), limits={"get_chat": None})
    served.server.faults.add("latency", delay=60, times=1)
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        served.call(served.server.wait_in_flight(BUSINESS, 1))  # the caller is blocked now
        signal.pthread_kill(main, signum)

    previous = signal.signal(signum, handler)
    try:
        helper = threading.Thread(target=interrupt)
        helper.start()
        with pytest.raises(raised):
            client.get_chat(BUSINESS, served.chat_id)
        helper.join(WAIT)
    finally:
        signal.signal(signum, previous)
    # The call was cancelled on the loop, and had ended, before the exception reached us.
    assert len(ended) == 1 and isinstance(ended[0], asyncio.CancelledError)
    assert client.get_chat(BUSINESS, served.chat_id).chat_id == served.chat_id  # still usable
    assert client.stats.snapshot().operations[0].failed_calls == 0  # a cancel is no failure


def test_an_interrupt_before_the_call_starts_on_the_loop_never_starts_it(
    served: ThreadedFake, make: Callable[..., ChatsClient]
) -> None:
    """The loop is held busy, so the call cannot have started when the signal lands."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    client = make()
    client.get_chats(BUSINESS)  # the async client exists: the next call is one step
    served.server.journal.clear()
    main = threading.main_thread().ident
    assert main is not None
    busy, release = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        busy.set()
        release.wait(WAIT)

    def main_waits_in(*frames: str, outside: str = "") -> None:
        """Until the main thread's stack holds `frames`, and not `outside`: a condition
        polled every millisecond (another thread's frames signal no event to wait on)."""
        for _ in range(int(WAIT * 1000)):
            frame, names = sys._current_frames().get(main), set()
            while frame is not None:
                names.add(frame.f_code.co_name)
                frame = frame.f_back
            if names.issuperset(frames) and outside not in names:
                return
            threading.Event().wait(0.001)
        raise AssertionError(f"the main thread never waited in {frames}")

    def interrupt() -> None:
        busy.wait(WAIT)
        main_waits_in("run", "result")  # blocked on the call's answer
        signal.pthread_kill(main, signal.SIGINT)
        # The loop goes on only once the caller, interrupted, waits for the call's end.
        main_waits_in("run", "wait", outside="result")
        release.set()

    # Python's own handler, whatever this process inherited: started in the background
    # by a non-interactive shell (a CI script's `cmd &`), it ignores SIGINT from birth.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        client._runner.loop.call_soon_threadsafe(hold_the_loop)
        helper = threading.Thread(target=interrupt)
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            client.get_chat(BUSINESS, served.chat_id)
        helper.join(WAIT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [(e.operation, e.status) for e in served.server.journal] == []  # nothing was sent
    assert client.get_chat(BUSINESS, served.chat_id).chat_id == served.chat_id
