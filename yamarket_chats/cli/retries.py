"""The first retry of a run, said on stderr even without -v.

Without -v the command shows none of the client's WARNING lines (its summary
counts the retries), so a call to a host that never answers would stay silent
through every timeout and backoff: a minute or more of nothing. The client
tells each retry to its hooks (``on_retry``); `FirstRetryNotice` turns the
first one into one WARNING line, the same words as the client's own line for
a retry, and says nothing more: with -v the client's lines show every retry.
"""

from __future__ import annotations

import logging

from ..hooks import CallInfo, ClientHooks
from .logs import CLI_LOGGER

__all__ = ["FirstRetryNotice"]

_logger = logging.getLogger(CLI_LOGGER)


class FirstRetryNotice(ClientHooks):
    """One WARNING line on the first retry of the client's calls; silent afterwards."""

    def __init__(self) -> None:
        self.told = False

    async def on_retry(self, call: CallInfo, reason: str, delay: float) -> None:
        """The first retry: what is retried (method, business, why) and the next attempt."""
        if self.told:
            return
        self.told = True
        _logger.warning(
            "%s business=%d: %s; retrying, attempt %d in %.2f s (-v logs every retry)",
            call.method,
            call.business_id,
            reason,
            call.attempts + 1,
            delay,
            extra={
                "business_id": call.business_id,
                "method": call.method,
                "attempt": call.attempts,
                "status": call.status,
            },
        )
