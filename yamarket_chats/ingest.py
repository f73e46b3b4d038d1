"""Bulk ingestion: incremental sync of every chat and message into a sink.

>>> async with ChatsClient(api_key=key) as client, SQLiteSink("chats.db") as sink:
...     report = await sync(client, [business_id], sink)

Each run lists the chats of every business id, then walks the history of each
chat from the sink's checkpoint on (``message_id_from = last id + 1``), a few
chats at a time. Every page of history is handed to the sink together with
the checkpoint that covers it, so an interrupted run loses at most the pages
in flight, and the next run fetches them again.

A chat is skipped without any history request when its ``updated_at`` (the
time of its last message) equals the one seen before its last complete walk
*and* that time was already ``settle_seconds`` in the past when that walk
started. The second condition matters: ``updated_at`` has a resolution of one
second and the two clocks differ, so a message posted in the same second as
the previous one, just after our walk, would leave ``updated_at`` unchanged.
Chats whose last message is that recent are always walked (a cheap request
that returns nothing new). ``skip_unchanged=False`` walks every chat.

`Sink` is the contract a sink fulfils. It lives here, below the sinks that
import it, and so does `PageSink`, which writes the contract's ``save_page``
once for the library's sinks (each of them writes only what it does with a
`Page`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import NamedTuple, Protocol

from ._closing import wait_out
from .client import ChatsClient
from .errors import InvalidRequestError
from .models import Chat, ChatMessage, ChatsPage
from .pagination import PageIterator

__all__ = [
    "DEFAULT_MAX_BUSINESSES",
    "DEFAULT_SETTLE_SECONDS",
    "ChatState",
    "Claim",
    "Sink",
    "SyncObserver",
    "SyncReport",
    "sync",
]

#: Businesses `sync` runs at once by default: enough to keep every core busy,
#: few enough that the event loop turns often whatever the number of ids (at
#: 5,000 at once it turned once a second). Raise it when per-business quotas
#: bind across many cabinets: a business waiting on its quota costs no CPU.
DEFAULT_MAX_BUSINESSES = 64

#: Default margin for `sync`'s skip rule: one second of ``updated_at``
#: resolution plus generous room for clock skew between us and the API.
DEFAULT_SETTLE_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class ChatState:
    """A sink's checkpoint for one chat.

    ``last_message_id``: the highest message id stored (``None``: none yet).
    ``updated_at``: the chat's ``updated_at`` as listed before the last
    *complete* history walk; ``synced_at``: Unix time that walk's listing
    started. Both are ``None`` until a walk completes.
    """

    last_message_id: int | None = None
    updated_at: dt.datetime | None = None
    synced_at: float | None = None


class Sink(Protocol):
    """Where `sync` writes chats and messages, and keeps its checkpoints.

    `save_page` must store the messages and the new checkpoint atomically (or
    store the messages first: then a crash between the two means the page is
    fetched and handed over again, i.e. at-least-once). Calls may come from
    several tasks at once; a sink serializes them as it needs to.

    Optional: a sink shared by several processes may also have
    ``claim(business_id)``, returning an async context manager that yields
    the sink to write that business through (see `Claim`). `sync` enters it
    before loading the business's checkpoints and leaves it after the last
    write, so two syncs of one business never run at once
    (`PostgresSink.claim` takes the business's lease; a sink that cannot get
    the claim raises `SinkLockedError`). Sinks without it are used as they are.
    """

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """The checkpoints of a business's chats, by chat id."""
        ...

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        """Insert or update chats as listed (one page of the chat list)."""
        ...

    async def save_page(
        self,
        business_id: int,
        chat_id: int,
        messages: Sequence[ChatMessage],
        state: ChatState,
    ) -> None:
        """Store one page of a chat's new messages and the checkpoint covering it."""
        ...


Claim = Callable[[int], AbstractAsyncContextManager[Sink]]
"""A sink's optional ``claim(business_id)``: hold the business for one sync (see `Sink`)."""


class SyncObserver(Protocol):
    """What a sync tells about each business as it goes: pass one as ``sync(observer=...)``.

    Called inline, in the sync's tasks: keep each method quick, never await,
    never raise. `yamarket_chats.metrics.SyncMetrics` is one; a sync without
    an observer pays one ``is None`` test per page.
    """

    def business_started(self, business_id: int, leased: bool) -> None:
        """A business's sync begins; ``leased``: under a lease (PostgreSQL's claim, a fleet)."""
        ...

    def page_saved(self, business_id: int, messages: int) -> None:
        """The sink stored one page of history holding ``messages`` new messages."""
        ...

    def business_ended(self, business_id: int, error: BaseException | None) -> None:
        """A business's sync ended: completed (``None``), failed, or cancelled (the error)."""
        ...


class Page(NamedTuple):
    """One `Sink.save_page` call as a value: a chat's new messages and their checkpoint."""

    business_id: int
    chat_id: int
    messages: Sequence[ChatMessage]
    state: ChatState


class PageSink:
    """Base of the library's sinks: `Sink.save_page` written once, handing over one `Page`.

    A subclass writes `_write_page`. A sink whose writes may carry more than
    the page (a lease's fence) can take it as a keyword of its own
    ``_write_page`` and pass it from where it has it.
    """

    async def save_page(
        self,
        business_id: int,
        chat_id: int,
        messages: Sequence[ChatMessage],
        state: ChatState,
    ) -> None:
        """Store one page of a chat's new messages and the checkpoint covering it."""
        await self._write_page(Page(business_id, chat_id, messages, state))

    async def _write_page(self, page: Page) -> None:
        raise NotImplementedError


@dataclasses.dataclass
class SyncReport:
    """What a sync did; updated live while it runs and passed to ``progress``."""

    businesses: int = 0  #: business ids whose chats are listed so far
    businesses_total: int = 0  #: business ids to sync (duplicates dropped)
    businesses_done: int = 0  #: business ids whose every chat is done
    chats_total: int = 0  #: chats listed
    chats_done: int = 0  #: chats finished (walked or skipped)
    chats_fetched: int = 0  #: chats whose history was requested
    chats_skipped: int = 0  #: unchanged chats, no request
    pages: int = 0  #: history pages written
    messages: int = 0  #: new messages written
    requests: int = 0  #: HTTP requests the client sent during the sync
    retries: int = 0  #: of which retries
    rate_limited: int = 0  #: 420 answers received
    waited_seconds: float = 0.0  #: time spent waiting on client-side limits
    elapsed: float = 0.0  #: wall time of the sync, seconds

    @property
    def messages_per_second(self) -> float:
        """New messages written per second of wall time."""
        return self.messages / self.elapsed if self.elapsed > 0 else 0.0


Progress = Callable[[SyncReport], None]


async def sync(
    client: ChatsClient,
    business_ids: Iterable[int],
    sink: Sink,
    *,
    statuses: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    context_types: Sequence[str] | None = None,
    order_ids: Sequence[int] | None = None,
    concurrency: int = 4,
    max_businesses: int | None = DEFAULT_MAX_BUSINESSES,
    skip_unchanged: bool = True,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    progress: Progress | None = None,
    observer: SyncObserver | None = None,
) -> SyncReport:
    """Sync the chats of ``business_ids`` (and their new messages) into ``sink``.

    :param statuses: a filter of the chat list, as for `ChatsClient.get_chats`.
    :param types: a filter of the chat list, as for `ChatsClient.get_chats`.
    :param context_types: a filter of the chat list, as for `ChatsClient.get_chats`.
    :param order_ids: a filter of the chat list, as for `ChatsClient.get_chats`.
    :param concurrency: chats walked at the same time per business id. The
        client still enforces its own limits (buckets, parallel cap, retries).
    :param max_businesses: business ids synced at the same time (`None`: all
        at once), taken in order from a queue as others finish
        (:data:`DEFAULT_MAX_BUSINESSES`).
    :param skip_unchanged: skip chats whose ``updated_at`` has not changed
        since their last complete walk and is older than ``settle_seconds``
        (see the module docs); ``False`` walks every chat from its checkpoint.
    :param progress: called with the live report after each page and chat.
    :param observer: told when each business starts and ends and of each
        page stored (`SyncObserver`; e.g. `yamarket_chats.metrics.SyncMetrics`).

    The first error stops the sync: walks in progress are cancelled, pages
    already saved stay saved, and the error is raised. Run again to resume.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    at_once = _at_once(max_businesses)
    ids = list(dict.fromkeys(business_ids))

    def list_chats(business_id: int) -> PageIterator[ChatsPage, Chat]:
        return client.iter_chats(
            business_id,
            statuses=statuses,
            types=types,
            context_types=context_types,
            order_ids=order_ids,
        )

    report = SyncReport(businesses_total=len(ids))
    notify = _reporter(client, report, progress)
    job = _Job(
        client,
        sink,
        list_chats,
        concurrency,
        skip_unchanged,
        settle_seconds,
        report,
        notify,
        observer,
    )
    try:
        await _run_queued(job.business, ids, at_once)
    finally:
        notify()
    return report


def _reporter(
    client: ChatsClient, report: SyncReport, progress: Progress | None
) -> Callable[[], None]:
    """What refreshes ``report`` from the client's stats (since now) and tells ``progress``."""
    before = dataclasses.replace(client.stats)
    loop = asyncio.get_running_loop()
    started = loop.time()

    def notify() -> None:
        stats = client.stats
        report.requests = stats.requests - before.requests
        report.retries = stats.retries - before.retries
        report.rate_limited = stats.rate_limited - before.rate_limited
        report.waited_seconds = stats.waited_seconds - before.waited_seconds
        report.elapsed = loop.time() - started
        if progress is not None:
            progress(report)

    return notify


async def _run_queued(
    run: Callable[[int], Awaitable[None]], ids: list[int], at_once: int | None
) -> None:
    """``run`` each id, ``at_once`` at a time (all, if ``None``), in order from a queue."""
    queue = iter(ids)

    async def runner() -> None:
        for business_id in queue:  # shared: each id goes to exactly one runner
            await run(business_id)

    await _gather_or_cancel([runner() for _ in range(min(at_once or len(ids), len(ids)))])


def _at_once(max_businesses: object) -> int | None:
    """``max_businesses`` checked: an int >= 1, or None (all at once)."""
    if max_businesses is None:
        return None
    if isinstance(max_businesses, bool) or not isinstance(max_businesses, int):
        raise InvalidRequestError(
            f"max_businesses must be an integer >= 1 or None, got {type(max_businesses).__name__}"
        )
    if max_businesses < 1:
        raise InvalidRequestError(f"max_businesses must be >= 1 or None, got {max_businesses}")
    return max_businesses


@dataclasses.dataclass
class _Job:
    client: ChatsClient
    sink: Sink
    list_chats: Callable[[int], PageIterator[ChatsPage, Chat]]
    concurrency: int
    skip_unchanged: bool
    settle_seconds: float
    report: SyncReport
    notify: Callable[[], None]
    observer: SyncObserver | None

    async def business(self, business_id: int) -> None:
        await self._observed(business_id)
        self.report.businesses_done += 1
        self.notify()

    async def _observed(self, business_id: int) -> None:
        if self.observer is None:
            await self._claimed(business_id)
            return
        # A fleet worker's sink is already leased (it carries the lease).
        leased = hasattr(self.sink, "claim") or hasattr(self.sink, "lease")
        self.observer.business_started(business_id, leased)
        try:
            await self._claimed(business_id)
        except BaseException as exc:
            self.observer.business_ended(business_id, exc)
            raise
        self.observer.business_ended(business_id, None)

    async def _claimed(self, business_id: int) -> None:
        claim: Claim | None = getattr(self.sink, "claim", None)
        if claim is None:
            await self._business(self.sink, business_id)
            return
        async with claim(business_id) as sink:
            await self._business(sink, business_id)

    async def _business(self, sink: Sink, business_id: int) -> None:
        states = await sink.load_state(business_id)
        listed_at = time.time()
        chats: list[Chat] = []
        listed: set[int] = set()
        async for page in self.list_chats(business_id).pages():
            await sink.save_chats(business_id, page.chats)
            # A list that shifts while it is paged may show a chat twice; one
            # walk per chat, or two walks would race on its checkpoint.
            fresh = [chat for chat in page.chats if chat.chat_id not in listed]
            listed.update(chat.chat_id for chat in fresh)
            chats += fresh
            self.report.chats_total += len(fresh)
            self.notify()
        self.report.businesses += 1
        queue = iter(chats)

        async def worker() -> None:
            for chat in queue:  # shared: each chat goes to exactly one worker
                await self.chat(sink, business_id, chat, states.get(chat.chat_id), listed_at)

        await _gather_or_cancel([worker() for _ in range(min(self.concurrency, len(chats)))])

    async def chat(
        self, sink: Sink, business_id: int, chat: Chat, state: ChatState | None, listed_at: float
    ) -> None:
        state = state or ChatState()
        if self.skip_unchanged and self._unchanged(chat, state):
            self.report.chats_skipped += 1
            self.report.chats_done += 1
            self.notify()
            return
        self.report.chats_fetched += 1
        last = state.last_message_id
        start = None if last is None else last + 1
        walk = self.client.iter_chat_history(business_id, chat.chat_id, message_id_from=start)
        async for page in walk.pages():
            messages = page.messages
            if messages:
                last = max(last or 0, max(m.message_id for m in messages))
            complete = not (page.paging and page.paging.next_page_token)
            new_state = (
                ChatState(last, chat.updated_at, listed_at)
                if complete
                else dataclasses.replace(state, last_message_id=last)
            )
            await self._save_page(sink, business_id, chat.chat_id, messages, new_state)
        self.report.chats_done += 1
        self.notify()

    async def _save_page(
        self,
        sink: Sink,
        business_id: int,
        chat_id: int,
        messages: list[ChatMessage],
        state: ChatState,
    ) -> None:
        save = asyncio.ensure_future(sink.save_page(business_id, chat_id, messages, state))
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            # A page handed to the sink is finished, not torn: the sink's own
            # writes stay atomic even for sinks that await inside save_page.
            # Cancellation can arrive more than once (a gather and its owner).
            await wait_out(save)
            if not save.cancelled() and save.exception() is None:
                self._saved(business_id, messages)
            raise
        self._saved(business_id, messages)

    def _saved(self, business_id: int, messages: list[ChatMessage]) -> None:
        if self.observer is not None:
            self.observer.page_saved(business_id, len(messages))
        self.report.pages += 1
        self.report.messages += len(messages)
        self.notify()

    def _unchanged(self, chat: Chat, state: ChatState) -> bool:
        if state.updated_at is None or state.synced_at is None:
            return False
        settled = state.updated_at.timestamp() < state.synced_at - self.settle_seconds
        return settled and chat.updated_at == state.updated_at


async def _gather_or_cancel(coros: Sequence[Awaitable[None]]) -> None:
    """Run coroutines together; on the first error, cancel and await the rest."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
