"""`PostgresSink`: chats, messages and checkpoints in PostgreSQL, shared by a fleet.

Needs ``pip install yamarket-chats[postgres]`` (asyncpg), imported when the
first sink is built, never by ``import yamarket_chats``.

Every write is ONE statement: a page's messages go in as one JSON parameter
(msgspec encodes it; ``json_to_recordset`` unpacks it on the server) and the
checkpoint rides in the same statement as a data-modifying CTE, so the page
and its checkpoint commit together in a single round trip, with no
BEGIN/COMMIT. Measured by ``benchmarks/fleet_pg_write.py`` against
``executemany`` in a transaction, ``COPY`` into a temporary table plus an
upsert, and arrays through ``unnest``: it costs the least client CPU per
message (the sync's bottleneck) and is as fast or faster in wall time.

The tables live in their own schema (``yamarket_chats`` by default) next to
the application's, with a ``schema_version`` table: the schema is created on
first use under a transaction-level advisory lock (so N workers starting at
once create it once), and a later version adds its migration to
`_MIGRATIONS`.

The fleet's business leases (`yamarket_chats.fleet.leases`) live in the same
schema; a page written for a lease is fenced by the lease's token in the same
statement, so a worker that lost its lease can never write again. A plain
`sync` takes the same lease on each business it syncs (`PostgresSink.claim`),
so two overlapping syncs, or a sync and a worker, never walk one business at
once, while different businesses proceed side by side. The lease code sits
below this module and reaches the database only through `PostgresSink.query`;
the fleet's worker sits above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec

from ..errors import SinkLockedError, YandexMarketError
from ..fleet.leases import (
    DEFAULT_LEASE_SECONDS,
    Fetch,
    Holder,
    Lease,
    LeaseLostError,
    Leases,
    default_worker_id,
    fence,
    keep_renewed,
    release_surely,
)
from ..ingest import ChatState
from ..models import Chat, ChatMessage
from ._thread import check_lock_timeout

__all__ = ["DEFAULT_LEASE_SECONDS", "Lease", "LeaseLostError", "PostgresSink", "PostgresSinkError"]

_encode = msgspec.json.Encoder().encode
_FETCH: dict[Fetch, str] = {"val": "fetchval", "row": "fetchrow", "all": "fetch"}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _driver() -> Any:
    """asyncpg, imported on first use."""
    import asyncpg  # type: ignore[import-untyped]

    return asyncpg


def _db_errors() -> tuple[type[BaseException], ...]:
    """What a failing database or connection raises (wrapped in `PostgresSinkError`)."""
    asyncpg = _driver()
    return (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresSinkError(YandexMarketError):
    """PostgreSQL failed (unreachable, refused, or an SQL error); never shows the password."""


# -- schema -------------------------------------------------------------------

_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE {s}.chats (
            business_id bigint NOT NULL,
            chat_id bigint NOT NULL,
            order_id bigint,
            type text NOT NULL,
            status text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            context_type text NOT NULL,
            customer_name text,
            customer_public_id text,
            campaign_id bigint,
            context_order_id bigint,
            return_id bigint,
            PRIMARY KEY (business_id, chat_id)
        );
        CREATE TABLE {s}.messages (
            business_id bigint NOT NULL,
            chat_id bigint NOT NULL,
            message_id bigint NOT NULL,
            created_at timestamptz NOT NULL,
            sender text NOT NULL,
            message text,
            payload jsonb,
            PRIMARY KEY (business_id, chat_id, message_id)
        );
        CREATE TABLE {s}.sync_state (
            business_id bigint NOT NULL,
            chat_id bigint NOT NULL,
            last_message_id bigint,
            updated_at timestamptz,
            synced_at double precision,
            PRIMARY KEY (business_id, chat_id)
        );
        CREATE TABLE {s}.leases (
            business_id bigint PRIMARY KEY,
            owner text,
            token bigint NOT NULL DEFAULT 0,
            expires_at timestamptz,
            claimed_at timestamptz,
            finished_at timestamptz,
            failed_at timestamptz,
            error text
        );
        """,
    ),
)

#: The schema version this release writes.
SCHEMA_VERSION = _MIGRATIONS[-1][0]

_CHAT_COLUMNS = (
    "business_id, chat_id, order_id, type, status, created_at, updated_at, context_type,"
    " customer_name, customer_public_id, campaign_id, context_order_id, return_id"
)

_SAVE_PAGE = """
WITH {fence} page AS (
    INSERT INTO {s}.messages AS m
    SELECT $1, $2, p."messageId", p."createdAt", p.sender, p.message, p.payload
    FROM json_to_recordset($3::json) AS p(
        "messageId" bigint, "createdAt" timestamptz, sender text, message text, payload jsonb
    ) {where}
    ON CONFLICT (business_id, chat_id, message_id) DO UPDATE SET
        created_at = excluded.created_at, sender = excluded.sender,
        message = excluded.message, payload = excluded.payload
    WHERE (m.created_at, m.sender, m.message, m.payload)
        IS DISTINCT FROM (excluded.created_at, excluded.sender, excluded.message, excluded.payload)
), state AS (
    INSERT INTO {s}.sync_state AS st
    SELECT $1, $2, $4, $5, $6 {where}
    ON CONFLICT (business_id, chat_id) DO UPDATE SET
        last_message_id = excluded.last_message_id,
        updated_at = excluded.updated_at, synced_at = excluded.synced_at
)
SELECT {ok}
"""

_SAVE_CHATS = """
WITH {fence} chats AS (
    INSERT INTO {s}.chats AS c ({columns})
    SELECT $1, l."chatId", l."orderId", l.type, l.status, l."createdAt", l."updatedAt",
        l.context->>'type', l.context->'customer'->>'name',
        l.context->'customer'->>'publicId', (l.context->>'campaignId')::bigint,
        (l.context->>'orderId')::bigint, (l.context->>'returnId')::bigint
    FROM json_to_recordset($2::json) AS l(
        "chatId" bigint, "orderId" bigint, type text, status text,
        "createdAt" timestamptz, "updatedAt" timestamptz, context jsonb
    ) {where}
    ON CONFLICT (business_id, chat_id) DO UPDATE SET
        order_id = excluded.order_id, type = excluded.type, status = excluded.status,
        created_at = excluded.created_at, updated_at = excluded.updated_at,
        context_type = excluded.context_type, customer_name = excluded.customer_name,
        customer_public_id = excluded.customer_public_id,
        campaign_id = excluded.campaign_id, context_order_id = excluded.context_order_id,
        return_id = excluded.return_id
    WHERE (c.*) IS DISTINCT FROM (excluded.*)
)
SELECT {ok}
"""


def _json(items: Sequence[Any]) -> str:
    """``items`` as the API's JSON, without NUL characters (PostgreSQL text cannot hold them).

    A NUL becomes U+FFFD; checked on the encoded bytes, so the common case
    costs one scan.
    """
    raw = _encode(items)
    if b"\\u0000" in raw:
        raw = _encode(_without_nul(msgspec.json.decode(raw)))
    return raw.decode()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    return value


def _statement(template: str, schema: str, fenced: bool, first_free: int) -> str:
    """`template` with or without the lease fence (its parameters numbered after the rest)."""
    return template.format(
        s=schema,
        columns=_CHAT_COLUMNS,
        fence=fence(schema, first_free, first_free + 1) if fenced else "",
        where="WHERE EXISTS (SELECT FROM fence)" if fenced else "",
        ok="EXISTS (SELECT FROM fence)" if fenced else "true",
    )


_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('[^']*'|[^\s&]*)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """``dsn`` with its password (in the userinfo or a ``password=`` parameter) as ``***``."""
    text = _PASSWORD_PARAM.sub(r"\1***", dsn)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparsable DSN>"
    if parts.password is None:
        return text
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _where(dsn: str) -> str:
    """host:port/database of a DSN, for error messages."""
    try:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return "<unparsable DSN>"


class PostgresSink:
    """Chats, messages and checkpoints in PostgreSQL (asyncpg), for one sync or a fleet.

    :param dsn: ``postgresql://user:password@host:5432/database``; or pass
        ``pool``, an ``asyncpg.Pool`` you own (the sink never closes it).
    :param schema: the PostgreSQL schema of the tables (created if missing).
    :param min_size, max_size: of the pool the sink creates from ``dsn``;
        every task of the sync shares it.
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
        outlives that sync if it dies without releasing it (SIGKILL, a lost
        machine); renewed every third of it while the sync runs.

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
        self._owner = default_worker_id()

    def __repr__(self) -> str:
        where = redact(self._dsn) if self._dsn is not None else "pool=..."
        return f"PostgresSink({where!r}, schema={self.schema!r})"

    # -- connection ----------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._dsn:
            found = [m.group(2).strip("'") for m in _PASSWORD_PARAM.finditer(self._dsn)]
            with contextlib.suppress(ValueError):
                password = urlsplit(self._dsn).password or ""
                found += [password, unquote(password)]
            for password in filter(None, found):
                text = text.replace(password, "***")
        return text

    def _error(self, exc: BaseException, doing: str) -> PostgresSinkError:
        where = _where(self._dsn) if self._dsn else "the pool's database"
        detail = self._scrub(str(exc)) or type(exc).__name__
        return PostgresSinkError(f"PostgreSQL at {where}: {doing}: {detail}")

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
                    self._pool = await _driver().create_pool(
                        self._dsn,
                        min_size=self._sizes[0],
                        max_size=self._sizes[1],
                        server_settings=self._settings,
                    )
                except _db_errors() as exc:
                    raise self._error(exc, "cannot connect") from None
                except ValueError as exc:  # a malformed DSN: never echo it
                    raise self._error(exc, "bad DSN") from None
            try:
                await self._migrate(self._pool)
            except _db_errors() as exc:
                raise self._error(exc, "cannot create the schema") from None
            self._ready = True
        return self

    async def _migrate(self, pool: Any) -> None:
        s = self.schema
        async with pool.acquire() as conn:
            # Up to date: no DDL, so workers may run as a user without CREATE rights.
            if await conn.fetchval("SELECT to_regclass($1)", f"{s}.schema_version"):
                current = await conn.fetchval(f"SELECT max(version) FROM {s}.schema_version")
                if current == SCHEMA_VERSION:
                    return
        async with pool.acquire() as conn, conn.transaction():
            # Serializes workers that start together; released at commit.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"yamarket:{s}")
            await conn.execute(
                f"CREATE SCHEMA IF NOT EXISTS {s};"
                f" CREATE TABLE IF NOT EXISTS {s}.schema_version ("
                " version integer NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = await conn.fetchval(f"SELECT max(version) FROM {s}.schema_version") or 0
            if current > SCHEMA_VERSION:
                raise PostgresSinkError(
                    f"schema {s} is at version {current}, newer than this yamarket_chats "
                    f"knows ({SCHEMA_VERSION}): upgrade yamarket_chats"
                )
            for version, sql in _MIGRATIONS:
                if version > current:
                    await conn.execute(sql.format(s=s))
                    await conn.execute(
                        f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version
                    )

    async def close(self) -> None:
        """Close the pool the sink created (not one you passed in); idempotent."""
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None and self._own_pool:
            await pool.close()

    async def __aenter__(self) -> PostgresSink:
        """Open at once: an unreachable database or a bad schema fails before any request."""
        try:
            return await self.open()
        except BaseException:
            await self.close()  # a pool made before the schema failed
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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
        except _db_errors() as exc:
            raise self._error(exc, f"cannot {doing}") from None

    async def _fetchval(self, key: str, template: str, first_free: int, *args: Any) -> Any:
        """Run one cached statement of a sink method, fenced when the lease is in ``args``."""
        fenced = len(args) > first_free - 1
        sql = self._sql.get((key, fenced))
        if sql is None:
            sql = self._sql[(key, fenced)] = _statement(template, self.schema, fenced, first_free)
        return await self.query(sql, *args, doing=key.replace("_", " "))

    def _locked(self, business_id: int, holder: Holder, waited: float) -> SinkLockedError:
        where = _where(self._dsn) if self._dsn else "the pool's database"
        left = holder.seconds_left
        expires = f", its lease expires in {max(left, 0.0):.1f} s unless renewed" if left else ""
        wait = f"; waited {waited:g} s" if waited > 0 else ""
        return SinkLockedError(
            f"business {business_id} in PostgreSQL at {where} (schema {self.schema}) is in use"
            f" by another sync: {self._scrub(holder.owner)} holds it{expires}{wait}. The lease is"
            f" released when that sync ends (or lapses when its holder dies);"
            f" pass lock_timeout (seconds) to wait for it"
        )

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
        leases = Leases(self, self._owner, self.lease_seconds)
        lease = await leases.take(business_id, self.lock_timeout)
        if isinstance(lease, Holder):
            raise self._locked(business_id, lease, self.lock_timeout)
        # The sync's own writes report the database's trouble: renewal retries.
        renewing = asyncio.ensure_future(keep_renewed(leases, lease, tolerate=(PostgresSinkError,)))
        try:
            yield Fenced(self, lease)
        finally:
            renewing.cancel()
            await release_surely(leases, lease)

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
        if not chats:
            return
        fence = (lease.owner, lease.token) if lease is not None else ()
        ok = await self._fetchval("save_chats", _SAVE_CHATS, 3, business_id, _json(chats), *fence)
        if not ok:
            raise LeaseLostError(f"the lease on business {business_id} was taken over")

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
        fence = (lease.owner, lease.token) if lease is not None else ()
        ok = await self._fetchval(
            "save_page",
            _SAVE_PAGE,
            7,
            business_id,
            chat_id,
            _json(messages),
            state.last_message_id,
            state.updated_at,
            state.synced_at,
            *fence,
        )
        if not ok:
            raise LeaseLostError(f"the lease on business {business_id} was taken over")


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
