"""A sink's presence: one connection of its pool, held idle while it may hold leases.

Its server pid goes into every lease row the sink takes, and a claimant
takes a lease over as soon as that pid is gone from ``pg_stat_activity``
(`yamarket_chats.fleet.leases`): a process that dies closes its sockets, and
its idle backend sees the end of the stream at once and exits. Idle, because
a backend busy with a statement notices only when it next writes to its
client, so the pool's working connections would keep a dead holder's leases
for as long as their statements last.

The pid is asked of the session itself (``pg_backend_pid()``), not taken
from the connection's start-up message: behind a pooler that message carries
the pooler's key, no backend's pid. Each use is a round trip (before every
claim and renewal, a third of the lease time apart): it finds a presence the
server or a middlebox dropped (and replaces it), and it keeps the connection
from looking idle to a load balancer or NAT that drops idle TCP. The session
turns off ``idle_session_timeout`` (PostgreSQL 14+) for itself, so a DBA's
limit on idle sessions does not end it under a live holder.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ._driver import PostgresSinkError, driver

_PID = "SELECT pg_backend_pid()"
_PING_SECONDS = 5.0  # a presence that does not answer within this is replaced
# PostgreSQL 14+ ends a session idle for idle_session_timeout; older ones lack
# the setting, which current_setting(..., true) reads as NULL: nothing to do.
_NO_IDLE_TIMEOUT = """
    SELECT set_config('idle_session_timeout', '0', false)
    WHERE current_setting('idle_session_timeout', true) IS NOT NULL"""


class Presence:
    """The connection a sink holds for its leases, acquired on first use, replaced when lost."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._lock: asyncio.Lock | None = None

    async def pid(self, pool: Any) -> int:
        """The server pid of the presence, acquired from ``pool`` if there is none open.

        Raises the driver's errors as they are (the sink words them).
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._open():
                try:
                    return int(await self._conn.fetchval(_PID, timeout=_PING_SECONDS))
                except Exception:  # whatever broke it: a new one below
                    pass
            await self._replace(pool)
            return int(await self._conn.fetchval(_PID))

    def _open(self) -> bool:
        if self._conn is None:
            return False
        try:
            return not self._conn.is_closed()
        except driver().InterfaceError:  # "released back to the pool": asyncpg does so on close
            return False

    async def _replace(self, pool: Any) -> None:
        if getattr(pool, "get_max_size", lambda: 2)() < 2:  # it would wait for itself
            raise PostgresSinkError(
                "a pool passed to PostgresSink needs max_size >= 2: the sink holds one of its"
                " connections while it holds leases"
            )
        await self.release(pool)
        conn = await pool.acquire()
        try:
            await conn.execute(_NO_IDLE_TIMEOUT)
        except BaseException:
            await pool.release(conn)
            raise
        self._conn = conn

    async def release(self, pool: Any) -> None:
        """Give the connection back to ``pool`` (before it closes: its close waits for it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken one: the pool discards it
                # The sink's pool does not reset what goes back into it (`_keep_session`):
                # the one session setting the sink makes is undone here.
                await conn.execute("RESET idle_session_timeout")
            with contextlib.suppress(Exception):
                await pool.release(conn)
