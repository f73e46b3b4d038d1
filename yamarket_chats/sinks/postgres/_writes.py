"""The sink's writes: each is ONE statement, fenced by a lease when it has one.

A page's messages go in as one JSON parameter (msgspec encodes it;
``json_to_recordset`` unpacks it on the server) and the checkpoint rides in
the same statement as a data-modifying CTE, so the page and its checkpoint
commit together in a single round trip, with no BEGIN/COMMIT. Measured by
``benchmarks/fleet_pg_write.py`` against ``executemany`` in a transaction,
``COPY`` into a temporary table plus an upsert, and arrays through
``unnest``: it costs the least client CPU per message (the sync's
bottleneck) and is as fast or faster in wall time.

A write under a lease starts with the lease's `fence` CTE, so it stores
nothing once another worker has claimed the business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ...fleet.leases import fence

_encode = msgspec.json.Encoder().encode

CHAT_COLUMNS = (
    "business_id, chat_id, order_id, type, status, created_at, updated_at, context_type,"
    " customer_name, customer_public_id, campaign_id, context_order_id, return_id"
)

_INSERT_MESSAGES = """
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
"""

SAVE_PAGE = (
    "WITH {fence} page AS ("
    + _INSERT_MESSAGES
    + """), state AS (
    INSERT INTO {s}.sync_state AS st
    SELECT $1, $2, $4, $5, $6 {where}
    ON CONFLICT (business_id, chat_id) DO UPDATE SET
        last_message_id = excluded.last_message_id,
        updated_at = excluded.updated_at, synced_at = excluded.synced_at
)
SELECT {ok}
"""
)

#: Messages alone, the checkpoint untouched (a notification's message).
SAVE_MESSAGES = "WITH {fence} page AS (" + _INSERT_MESSAGES + ")\nSELECT {ok}\n"

# A chat as listed never replaces a newer one (a notification's, stored while a
# sync's older listing was on its way).
SAVE_CHATS = """
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
    WHERE (c.*) IS DISTINCT FROM (excluded.*) AND excluded.updated_at >= c.updated_at
)
SELECT {ok}
"""


def to_json(items: Sequence[Any]) -> str:
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


def statement(template: str, schema: str, fenced: bool, first_free: int) -> str:
    """`template` with or without the lease fence (its parameters numbered after the rest)."""
    return template.format(
        s=schema,
        columns=CHAT_COLUMNS,
        fence=fence(schema, first_free, first_free + 1) if fenced else "",
        where="WHERE EXISTS (SELECT FROM fence)" if fenced else "",
        ok="EXISTS (SELECT FROM fence)" if fenced else "true",
    )
