"""`PostgresSink`: chats, messages and checkpoints in PostgreSQL, shared by a fleet.

Needs ``pip install yamarket-chats[postgres]`` (asyncpg), imported when the
first sink connects, never by ``import yamarket_chats``.

Every write is one statement, the page and its checkpoint committing
together (`_writes`); the tables live in their own versioned schema
(`_schema`); a DSN is a URL or libpq's key=value pairs, and its password
never leaves it (`_dsn`); one connection held idle while the sink holds
leases lets them go the moment its process dies (`_presence`); the sink
itself is in `_sink`.

The fleet's business leases (`yamarket_chats.fleet.leases`) live in the same
schema; a page written for a lease is fenced by the lease's token in the same
statement, so a worker that lost its lease can never write again. A plain
`sync` takes the same lease on each business it syncs (`PostgresSink.claim`),
so two overlapping syncs, or a sync and a worker, never walk one business at
once, while different businesses proceed side by side. The lease code sits
below this package and reaches the database only through
`PostgresSink.query`; the fleet's worker sits above it.
"""

from ...fleet.leases import DEFAULT_LEASE_SECONDS, Lease, LeaseLostError
from ._driver import PostgresSinkError
from ._dsn import redact
from ._schema import SCHEMA_VERSION
from ._sink import Fenced, PostgresSink

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "SCHEMA_VERSION",
    "Fenced",
    "Lease",
    "LeaseLostError",
    "PostgresSink",
    "PostgresSinkError",
    "redact",
]
