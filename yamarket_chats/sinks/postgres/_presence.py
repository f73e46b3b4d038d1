"""A sink's presence: one connection of its pool, held idle while it may hold leases.

Its server pid goes into every lease row the sink takes, and a claimant
takes a lease over as soon as that pid is gone from ``pg_stat_activity``
(`yamarket_chats.fleet.leases`): a process that dies closes its sockets, and
its idle backend sees the end of the stream at once and exits. Idle, because
a backend busy with a statement notices only when it next writes to its
client, so the pool's working connections would keep a dead holder's leases
for as long as their statements last.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ._driver import PostgresSinkError, db_errors, driver


class Presence:
    """The connection a sink holds for its leases, acquired on first use, replaced when lost."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._lock: asyncio.Lock | None = None

    async def pid(self, pool: Any) -> int:
        """The server pid of the presence, acquired from ``pool`` if there is none open.

        Raises the driver's errors as they are (the sink words them).
        """
        if not self._open():
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if not self._open():
                    await self._replace(pool)
        return int(self._conn.get_server_pid())

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
        self._conn = await pool.acquire()

    async def release(self, pool: Any) -> None:
        """Give the connection back to ``pool`` (before it closes: its close waits for it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*db_errors()):
                await pool.release(conn)
