"""Async iteration over `nextPageToken` pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from .errors import PaginationError, YandexMarketError
from .models import Paging

__all__ = ["PageIterator"]


class _Page(Protocol):
    @property
    def paging(self) -> Paging | None: ...


P = TypeVar("P", bound=_Page)
T = TypeVar("T")


class PageIterator(Generic[P, T]):
    """Walks every page of a listing, one request per page, in server order.

    ``async for item in it`` yields the items of each page exactly once;
    ``async for page in it.pages()`` yields whole pages. Only the current page
    is held, so memory stays flat however long the listing is. Failed pages
    are retried by the client's retry policy; when it gives up, the error is
    raised with ``.page_token`` set to the token of the page that failed, so
    the walk can be resumed with ``page_token=``.
    """

    def __init__(
        self,
        fetch: Callable[[str | None], Awaitable[P]],
        items: Callable[[P], Sequence[T]],
        page_token: str | None = None,
    ) -> None:
        self._fetch = fetch
        self._items = items
        self._start = page_token

    async def pages(self) -> AsyncIterator[P]:
        """Yield whole pages, starting from the `page_token` given, if any."""
        token = self._start
        seen = {token} if token else set()
        while True:
            try:
                page = await self._fetch(token)
            except YandexMarketError as exc:
                exc.page_token = token
                raise
            yield page
            paging = page.paging
            token = paging.next_page_token if paging is not None else None
            if not token:
                return
            if token in seen:
                err = PaginationError(f"the server returned page token {token!r} twice")
                err.page_token = token
                raise err
            seen.add(token)

    async def _walk(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in self._items(page):
                yield item

    def __aiter__(self) -> AsyncIterator[T]:
        return self._walk()
