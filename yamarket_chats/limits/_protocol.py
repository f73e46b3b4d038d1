"""What the request loop asks of a limiter, whichever store keeps the quotas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["NOT_SENT", "Limiter", "WaitTooLong"]

#: The status a request is finished with when it certainly never reached the
#: server (cancelled or refused before it went out, or written to a pooled
#: connection the server had already closed): a 5xx, so every limiter refunds it.
NOT_SENT: Final = 599


class WaitTooLong(Exception):
    """Raised by `Limiter.acquire` when the wait would pass the call's deadline.

    Raised at once, before sleeping in vain. ``retry_in``: seconds from now
    until the quota is known to be free again (``None`` when unknown, e.g.
    the parallel-request slots are all held). ``waited_for``: what was busy,
    when it was not the quota (a shared limiter's own connections). The
    client turns it into a :class:`~yamarket_chats.errors.RateLimitError`
    with ``retry_at``.
    """

    def __init__(self, retry_in: float | None, waited_for: str | None = None) -> None:
        super().__init__(f"quota wait past the deadline (free again in {retry_in} s)")
        self.retry_in = retry_in
        self.waited_for = waited_for


@runtime_checkable
class Limiter(Protocol):
    """Where a client's quotas live: in-process (`Limits`) or shared (Redis).

    For every request the client calls `acquire`, sends, then `finish` with
    the answer's status and headers (``None`` when no answer came), exactly
    once. Like the API, 2xx and 4xx answers spend quota and 5xx do not; a
    request that never reached the server is finished with :data:`NOT_SENT`
    (a 5xx), so it is refunded too.
    """

    waited: float  #: seconds requests spent waiting in `acquire`

    async def start(self) -> None:
        """Check the backend is usable (called when the client is entered)."""

    async def acquire(self, business_id: int, method: str, deadline: float | None = None) -> Any:
        """Wait until a request may go out; return a lease for `finish`.

        `deadline` is a ``time.monotonic()`` value: when the request could not
        go out before it, raise :class:`WaitTooLong` at once instead of waiting.
        """

    async def finish(
        self, lease: Any, status: int | None, headers: Mapping[str, str] | None
    ) -> float:
        """Give back the lease and learn from the answer's rate-limit headers.

        Returns the seconds until the server's window resets when the server
        says the quota is spent (0 otherwise), so a 420 can be told apart
        from the parallel-request cap.
        """

    async def close(self) -> None:
        """Release the backend's resources."""
