"""`PageIterator`: a walk of the async client, as a plain iterator on the caller's thread."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ..pagination import PageIterator as AsyncPageIterator
from ._runner import next_page

if TYPE_CHECKING:
    from . import ChatsClient

__all__ = ["PageIterator"]

T = TypeVar("T")
P = TypeVar("P")


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
                page = runner.run(next_page(pages))
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
