"""A journal of the requests the fake served, for assertions in tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any


@dataclasses.dataclass
class JournalEntry:
    """One request. Never holds a key or token; of the headers, only ``User-Agent``.

    ``status`` is ``None`` when the connection was dropped without an answer;
    ``body`` is the decoded JSON body, or for a file upload a summary
    ``{"file": {"filename", "size", "content_type"}}``; ``started`` and
    ``finished`` are ``time.monotonic()`` values. ``connection`` numbers the
    TCP connection that carried the request (1, 2, ... in the order connections
    carried their first request; equal ids mean a reused connection);
    ``reused`` is true when that connection had carried an earlier request.
    """

    method: str
    path: str
    operation: str
    business_id: int | None
    query: dict[str, str]
    started: float
    body: Any = None
    status: int | None = None
    finished: float | None = None
    fault: str | None = None
    connection: int = 0
    reused: bool = False
    user_agent: str | None = None


class Journal:
    """Requests in arrival order."""

    def __init__(self) -> None:
        self._entries: list[JournalEntry] = []

    def append(self, entry: JournalEntry) -> None:
        """Record a request (the fake calls this)."""
        self._entries.append(entry)

    def entries(
        self,
        operation: str | None = None,
        *,
        status: int | None = None,
        business_id: int | None = None,
    ) -> list[JournalEntry]:
        """The entries matching every filter given."""
        return [
            e
            for e in self._entries
            if (operation is None or e.operation == operation)
            and (status is None or e.status == status)
            and (business_id is None or e.business_id == business_id)
        ]

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
