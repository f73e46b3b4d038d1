"""`PostgresSink`: the sink itself (its pool, its writes, a plain sync's claim) and `Fenced`.

The statements are in `_writes` and `_schema`; the lease statements are the
fleet's (`yamarket_chats.fleet.leases`, below this module), which reach the
database through `PostgresSink.query` and `PostgresSink.presence` only.

The sink's presence (`_presence`), the connection whose server pid its lease
rows carry, is one connection of its pool; the pool made from a DSN gets one
connection more than ``max_size`` for it, so the syncs keep the pool they
asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..._closing import AsyncClosing
from ...errors import SinkLockedError
from ...fleet.leases import (
    DEFAULT_LEASE_SECONDS,
    Fetch,
    Holder,
    Lease,
    LeaseLostError,
    Leases,
    holding,
)
from ...ingest import ChatState
from ...models import Chat, ChatMessage
from .._thread import check_lock_timeout
from ._driver import PostgresSinkError, db_errors, driver
from ._dsn import connect_dsn, redact, scrub, where
from ._presence import Presence
from ._schema import check_version, migrate
from ._writes import SAVE_CHATS, SAVE_MESSAGES, SAVE_PAGE, statement, to_json

_FETCH: dict[Fetch, str] = {"val": "fetchval", "row": "fetchrow", "all": "fetch"}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def _keep_session(conn: Any) -> None:
    """The pool's reset of a released connection: nothing to undo.

    asyncpg's default runs four statements (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL) at every release, that is after every page written.
    The sink's statements leave no session state behind (no SET, LISTEN,
    cursor or session advisory lock; the presence's one setting is reset by
    `Presence.release`; a transaction is still rolled back by asyncpg
    itself), so its own pool skips them. A pool you pass is yours.
    """


class PostgresSink(AsyncClosing):
    """Chats, messages and checkpoints in PostgreSQL (asyncpg), for one sync or a fleet.

    :param dsn: ``postgresql://user:password@host:5432/database``, or
        libpq's key=value form (``host=db user=u dbname=market``); or pass
        ``pool``, an ``asyncpg.Pool`` you own (the sink never closes it, and
        keeps one of its connections while it holds leases: give it
        ``max_size`` >= 2).
    :param schema: the PostgreSQL schema of the tables (created if missing).
    :param min_size, max_size: of the pool the sink creates from ``dsn``;
        every task of the sync shares it (plus one connection, the sink's
        presence while it holds leases).
    :param synchronous_commit: ``False`` (default) sets ``synchronous_commit
        = off`` on the sink's own connections: a commit does not wait for
        its WAL flush. Safe here because a page and its checkpoint commit
        together: a database crash can only lose the last commits whole,
        and the next run fetches those pages again. ``True`` keeps the
        server's setting (a pool you pass in is never changed).
    :param lock_timeout: how long a `sync` waits for a business that another
        sync or a fleet worker holds (default 0: fail at once with
        `SinkLockedError` naming the holder; ``math.inf``: wait for ever).
    :param lease_seconds: how long the lease a `sync` holds on a business
        outlives that sync if it cannot release it and its database session
        outlives it too (a machine cut off without closing its connections;
        a killed process's session ends with it, and frees its leases at
        once); renewed every third of it while the sync runs.
    :param migrate: ``False``: never create or migrate the schema (a reader, a
        role without DDL rights): a missing or other version is an error.

    Tables (in ``schema``): ``chats`` (key ``business_id, chat_id``),
    ``messages`` (key ``business_id, chat_id, message_id``; ``payload`` as
    ``jsonb``), ``sync_state`` (checkpoints), ``leases`` (the fleet's) and
    ``schema_version``. Rows are upserted and each page commits in one
    statement with its checkpoint: every message is stored exactly once and
    a crash loses at most the pages in flight. Timestamps are ``timestamptz``
    (the instant is kept; PostgreSQL does not keep the API's UTC offset).

    One sync per business at a time: `sync` takes the business's lease
    (`claim`, the row the fleet's workers take) before it reads the
    checkpoints, so two overlapping runs of one business never walk its
    chats twice, while syncs of different businesses run side by side.

    Use as ``async with PostgresSink(dsn) as sink``, or call `close()`. The
    pool is opened and the schema created on first use (or `open()`), inside
    the running loop. The password never appears in ``repr``, logs or errors.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: Any = None,
        schema: str = "yamarket_chats",
        min_size: int = 1,
        max_size: int = 10,
        synchronous_commit: bool = False,
        lock_timeout: float = 0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        migrate: bool = True,
    ) -> None:
        self.lock_timeout = check_lock_timeout(lock_timeout)
        if not (isinstance(lease_seconds, (int, float)) and 0 < lease_seconds < math.inf):
            raise ValueError(
                f"lease_seconds must be a number of seconds > 0, got {lease_seconds!r}"
            )
        self.lease_seconds = float(lease_seconds)
        if (dsn is None) == (pool is None):
            raise ValueError("pass exactly one of dsn and pool")
        if not _IDENTIFIER.match(schema):
            raise ValueError(
                f"schema must be a lowercase SQL identifier (a-z, 0-9, _; up to 63), got {schema!r}"
            )
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size} and {max_size}")
        self._dsn = dsn
        self._pool = pool
        self._own_pool = pool is None
        self.schema = schema
        self._sizes = (min_size, max_size)
        self._settings = {} if synchronous_commit else {"synchronous_commit": "off"}
        self._opening: asyncio.Lock | None = None
        self._ready = False
        self._closed = False
        self._sql: dict[tuple[str, bool], str] = {}
        self._leases = Leases(self, self.lease_seconds)  # one owner name for all its claims
        self._presence = Presence()
        self._migrate = migrate

    def __repr__(self) -> str:
        shown = redact(self._dsn) if self._dsn is not None else "pool=..."
        return scrub(self._dsn, f"PostgresSink({shown!r}, schema={self.schema!r})")

    # -- connection ----------------------------------------------------------------

    def _error(self, exc: BaseException, doing: str) -> PostgresSinkError:
        detail = str(exc) or type(exc).__name__
        text = f"PostgreSQL at {where(self._dsn)}: {doing}: {detail}"
        return PostgresSinkError(scrub(self._dsn, text))

    @property
    def pool(self) -> Any:
        """The pool (after `open()`); share it for your own queries."""
        if self._pool is None:
            raise RuntimeError("PostgresSink is not open yet: await sink.open() first")
        return self._pool

    async def open(self) -> PostgresSink:
        """Connect (if given a DSN) and create or migrate the schema; idempotent."""
        if self._closed:
            raise RuntimeError("PostgresSink is closed")
        if self._ready:
            return self
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._ready:
                return self
            if self._pool is None:
                assert self._dsn is not None
                try:
                    self._pool = await driver().create_pool(
                        connect_dsn(self._dsn),
                        min_size=self._sizes[0],
                        max_size=self._sizes[1] + 1,  # and the presence
                        server_settings=self._settings,
                        reset=_keep_session,
                    )
                except db_errors() as exc:
                    raise self._error(exc, "cannot connect") from None
                except ValueError as exc:  # a malformed DSN: never echo it
                    raise self._error(exc, "bad DSN") from None
            try:
                if self._migrate:
                    await migrate(self._pool, self.schema)
                else:
                    await check_version(self._pool, self.schema)
            except db_errors() as exc:
                raise self._error(exc, "cannot create the schema") from None
            self._ready = True
        return self

    async def close(self) -> None:
        """Close the pool the sink created (not one you passed in); idempotent."""
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await self._presence.release(pool)
            if self._own_pool:
                await pool.close()

    async def __aenter__(self) -> PostgresSink:
        """Open at once: an unreachable database or a bad schema fails before any request."""
        try:
            return await self.open()
        except BaseException:
            await self.close()  # a pool made before the schema failed
            raise

    async def query(
        self, sql: str, *args: Any, fetch: Fetch = "val", doing: str = "run a query"
    ) -> Any:
        """Run one statement on the sink's pool (opened first): its value, first row or rows.

        ``fetch`` is ``"val"``, ``"row"`` or ``"all"`` (asyncpg's ``fetchval``,
        ``fetchrow``, ``fetch``). A database error is raised as
        `PostgresSinkError` ("PostgreSQL at host:port/db: cannot ``doing``:
        ..."), the password scrubbed. The sink's own reads go through it, and
        the fleet's leases (`yamarket_chats.fleet.leases`), which share the
        pool, the schema and the error wording.
        """
        await self.open()
        try:
            return await getattr(self.pool, _FETCH[fetch])(sql, *args)
        except db_errors() as exc:
            raise self._error(exc, f"cannot {doing}") from None

    async def presence(self) -> int:
        """The server pid of the sink's presence: one connection held idle for its leases.

        Acquired from the pool on first use and held until `close()`; one the
        server or the network closed is replaced. Its pid goes into every
        lease the sink takes, so that a claimant can take the lease over as
        soon as the session is gone (see `yamarket_chats.fleet.leases`).
        """
        await self.open()
        try:
            return await self._presence.pid(self.pool)
        except db_errors() as exc:
            raise self._error(exc, "cannot open a session for the leases") from None

    async def _write(
        self, key: str, template: str, lease: Lease | None, business_id: int, *args: Any
    ) -> None:
        """Run one write (its statement made once), fenced by ``lease`` when there is one."""
        fenced = lease is not None
        sql = self._sql.get((key, fenced))
        if sql is None:
            sql = statement(template, self.schema, fenced, first_free=len(args) + 2)
            self._sql[(key, fenced)] = sql
        if lease is not None:
            args = (*args, lease.owner, lease.token)
        if not await self.query(sql, business_id, *args, doing=key.replace("_", " ")):
            raise LeaseLostError(f"the lease on business {business_id} was taken over")

    def _locked(self, business_id: int, holder: Holder, waited: float) -> SinkLockedError:
        left = holder.seconds_left
        expires = f", its lease expires in {max(left, 0.0):.1f} s unless renewed" if left else ""
        wait = f"; waited {waited:g} s" if waited > 0 else ""
        text = (
            f"business {business_id} in PostgreSQL at {where(self._dsn)} (schema {self.schema})"
            f" is in use by another sync: {holder.owner} holds it{expires}{wait}. The lease is"
            f" released when that sync ends (at once if its process dies); pass lock_timeout"
            f" (seconds) to wait for it"
        )
        return SinkLockedError(scrub(self._dsn, text))

    @contextlib.asynccontextmanager
    async def claim(self, business_id: int) -> AsyncIterator[Fenced]:
        """Hold the lease on ``business_id`` for one sync; yield the sink to write it through.

        `yamarket_chats.ingest.sync` enters this before loading the business's
        checkpoints. It takes the same lease row as a fleet worker
        (`yamarket_chats.fleet`): it waits up to ``lock_timeout`` while another
        sync or worker holds it, then raises `SinkLockedError` naming the
        holder. The lease is renewed while the sync runs and released when it
        ends; every write through the yielded sink is fenced by it, so a sync
        that lost its lease (paused past ``lease_seconds``) writes nothing more
        and gets `LeaseLostError`.
        """
        lease = await self._leases.take(business_id, self.lock_timeout)
        if isinstance(lease, Holder):
            raise self._locked(business_id, lease, self.lock_timeout)
        # The sync's own writes report the database's trouble: renewal retries.
        async with holding(self._leases, lease, tolerate=(PostgresSinkError,)):
            yield Fenced(self, lease)

    # -- the Sink protocol -----------------------------------------------------------

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """The checkpoints of a business's chats, by chat id."""
        rows = await self.query(
            f"SELECT chat_id, last_message_id, updated_at, synced_at"
            f" FROM {self.schema}.sync_state WHERE business_id = $1",
            business_id,
            fetch="all",
            doing="load state",
        )
        return {r[0]: ChatState(r[1], r[2], r[3]) for r in rows}

    async def save_chats(
        self, business_id: int, chats: Sequence[Chat], *, lease: Lease | None = None
    ) -> None:
        """Upsert chats as listed (unchanged rows are not rewritten).

        With ``lease``, nothing is written and `LeaseLostError` is raised if
        the lease was taken over.
        """
        if chats:
            await self._write("save_chats", SAVE_CHATS, lease, business_id, to_json(chats))

    async def save_page(
        self,
        business_id: int,
        chat_id: int,
        messages: Sequence[ChatMessage],
        state: ChatState,
        *,
        lease: Lease | None = None,
    ) -> None:
        """Upsert a page of messages and the chat's checkpoint in one statement.

        With ``lease``, nothing is written and `LeaseLostError` is raised if
        the lease was taken over.
        """
        await self._write(
            "save_page",
            SAVE_PAGE,
            lease,
            business_id,
            chat_id,
            to_json(messages),
            state.last_message_id,
            state.updated_at,
            state.synced_at,
        )

    async def save_messages(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage]
    ) -> None:
        """Upsert messages, the chat's checkpoint untouched: `SQLiteSink.save_messages`.

        Takes no lease: it writes none of the checkpoints a lease guards.
        """
        if messages:
            await self._write(
                "save_messages", SAVE_MESSAGES, None, business_id, chat_id, to_json(messages)
            )


class Fenced:
    """The sink as one leased sync sees it: every write carries the lease (the fence)."""

    def __init__(self, sink: PostgresSink, lease: Lease) -> None:
        self.sink, self.lease = sink, lease

    async def load_state(self, business_id: int) -> Mapping[int, ChatState]:
        """The checkpoints of a business's chats, by chat id."""
        return await self.sink.load_state(business_id)

    async def save_chats(self, business_id: int, chats: Sequence[Chat]) -> None:
        """`PostgresSink.save_chats` under the lease."""
        await self.sink.save_chats(business_id, chats, lease=self.lease)

    async def save_page(
        self, business_id: int, chat_id: int, messages: Sequence[ChatMessage], state: ChatState
    ) -> None:
        """`PostgresSink.save_page` under the lease."""
        await self.sink.save_page(business_id, chat_id, messages, state, lease=self.lease)
