"""The sink's tables, versioned: migrations and the one function that applies them.

The tables live in their own schema (``yamarket_chats`` by default) next to
the application's, with a ``schema_version`` table: the schema is created on
first use under a transaction-level advisory lock (so N workers starting at
once create it once), and a later version adds its migration to
`MIGRATIONS`. The ``leases`` table is the fleet's
(`yamarket_chats.fleet.leases`): it is created here so that one schema has
one version number. Version 2 adds ``leases.holder_pid``, the holder's
presence session, so that a dead holder's leases are taken over at once.
"""

from __future__ import annotations

from typing import Any

from ._driver import PostgresSinkError

MIGRATIONS: tuple[tuple[int, str], ...] = (
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
    (
        2,
        # The server pid of the holder's presence session: a lease whose
        # holder's session is gone may be claimed at once (fleet.leases).
        """
        ALTER TABLE {s}.leases ADD COLUMN holder_pid integer;
        """,
    ),
)

#: The schema version this release writes.
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def check_version(pool: Any, s: str) -> None:
    """`PostgresSinkError` unless schema ``s`` exists at `SCHEMA_VERSION` (no DDL, for readers)."""
    async with pool.acquire() as conn:
        current = None
        if await conn.fetchval("SELECT to_regclass($1)", f"{s}.schema_version"):
            current = await conn.fetchval(f"SELECT max(version) FROM {s}.schema_version")
    if current is None:
        raise PostgresSinkError(
            f"schema {s} holds no synced tables: sync into this database first"
            " (yamarket-chats sync --postgres-url), or name the schema the sync used"
        )
    if current != SCHEMA_VERSION:
        raise PostgresSinkError(
            f"schema {s} is at version {current}; this yamarket_chats reads version"
            f" {SCHEMA_VERSION}: run a sync of this version first (it migrates), or match versions"
        )


async def migrate(pool: Any, s: str) -> None:
    """Create or migrate schema ``s`` to `SCHEMA_VERSION` (no DDL when it is up to date)."""
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
        for version, sql in MIGRATIONS:
            if version > current:
                await conn.execute(sql.format(s=s))
                await conn.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version)
