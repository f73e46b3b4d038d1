"""Business leases in PostgreSQL: claim, take, renew, fence, release; one renew loop.

Each business has one row in the sink's ``leases`` table. Whoever syncs a
business holds its row: a fleet worker (`yamarket_chats.fleet.run_worker`
claims whichever business is due) and a plain sync (`PostgresSink.claim`
takes the one it was asked for). A claim bumps the row's ``token``; every
write made under the lease carries it (`fence`) and the database refuses the
write once a newer claim exists. Time is the database's ``now()``.

**A dead holder is taken over at once.** A lease row also records the
holder's *presence*: the server pid (``holder_pid``) of one connection that
the holder keeps open, idle, for as long as it may hold leases
(`Database.presence`). A claim treats a lease as free when that pid is gone
from ``pg_stat_activity``, not only once the lease has expired: a SIGKILLed
or OOM-killed process closes its sockets, its idle backend sees the end of
the stream at once and exits, and the next claimant takes over without
waiting ``lease_seconds``. A holder that is merely paused (a stopped VM, a
long GC) keeps its session, so it is taken over only when its lease expires,
and the token refuses its writes from then on (the fence, as before). A
presence that dies while its process lives leaves its leases free for the
taking: safe, since the fence refuses the holder's next write with
`LeaseLostError` and its renewal reports the loss; and each renewal writes
the holder's current presence back (a lost one is replaced), so a holder
nobody took over from is whole again. A pid reused by a new session only
makes a claimant wait for the expiry, as before; so does a node lost without
a FIN, whose sessions live on until the server's TCP keepalive ends them.

Why a pid in the row rather than a session-level advisory lock beside it:
the claim stays one statement on any pooled connection (an advisory lock
must be taken, checked and freed on the one session that holds it), it
needs no lock-key space shared with the application's own advisory locks,
and the row says who holds what in one place (``SELECT ... FROM leases``).
``pg_stat_activity`` shows every session's pid to every role, so workers
without special rights can read it.

Every holder holds its lease through `holding`: the one renew loop, and a
release that survives cancellation. A claim survives cancellation too
(`Leases._claimed`): a claim that commits just as its caller is cancelled
is released before the cancellation goes on, instead of holding the
business until it expires.

Where this module sits, so that every import goes downwards: below the
PostgreSQL sink, which needs the lease for a plain sync's claim and the fence
for its writes, and so below the worker, which is built on both. It imports
only `yamarket_chats.errors`, and reaches the database through `Database`, a
small public interface the sink offers (its ``schema`` and
`PostgresSink.query`: one statement on its pool, with its error wording and
password scrubbing), never a private method of the sink. The
``yamarket_chats.fleet`` package loads its modules lazily, so the sink's
import of this module does not load the worker (which imports the sink).
The table itself is created by the sink's migrations: one schema, one
version number.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, Literal, NamedTuple, Protocol

from .._closing import wait_out
from ..errors import YandexMarketError

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "Database",
    "Holder",
    "Lease",
    "LeaseLostError",
    "Leases",
    "default_worker_id",
    "fence",
    "holding",
    "last_finished",
    "wait_out",
]

#: Seconds a lease outlives a sync or worker that stopped renewing it (killed, hung, cut off).
DEFAULT_LEASE_SECONDS = 30.0

Fetch = Literal["val", "row", "all"]


class LeaseLostError(YandexMarketError):
    """A write for a business lease that another worker has taken over since."""


@dataclasses.dataclass(frozen=True)
class Lease:
    """A worker's claim on one business (see `yamarket_chats.fleet`).

    ``token`` grows by one at every claim: writes carry it, and the database
    refuses them once a newer claim exists.
    """

    business_id: int
    owner: str
    token: int


class Holder(NamedTuple):
    """Who holds a lease that could not be taken, and its seconds left (``None``: unknown)."""

    owner: str
    seconds_left: float | None


class Database(Protocol):
    """What the leases need of PostgreSQL: `PostgresSink` offers it."""

    schema: str

    async def query(self, sql: str, *args: Any, fetch: Fetch = ..., doing: str = ...) -> Any:
        """Run one statement; the value, row or rows ``fetch`` names."""
        ...

    async def presence(self) -> int:
        """The server pid of a session kept open and idle while leases may be held.

        Called before each claim and renewal: a lost session is replaced.
        """
        ...


async def last_finished(db: Database, business_ids: Sequence[int]) -> dict[int, float]:
    """When each business's last fleet sync finished (Unix time), from its lease row;
    businesses never finished are left out."""
    rows = await db.query(
        f"SELECT business_id, extract(epoch FROM finished_at)::float8 FROM {db.schema}.leases"
        " WHERE business_id = ANY($1::bigint[]) AND finished_at IS NOT NULL",
        list(business_ids),
        fetch="all",
        doing="read when each business last synced",
    )
    return {row[0]: row[1] for row in rows}


def default_worker_id() -> str:
    """``host:pid:random``, the owner name a worker writes into its leases."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def fence(schema: str, owner: int, token: int) -> str:
    """The CTE ``fence`` that a write under a lease starts with.

    The lease's owner and token are the statement's parameters number
    ``owner`` and ``token`` (the business id is ``$1``). It locks the lease
    row against a concurrent claim for the rest of the statement, and yields
    no row when the lease was taken over.
    """
    return f"""
fence AS (
    SELECT 1 FROM {schema}.leases
    WHERE business_id = $1 AND owner = ${owner} AND token = ${token}
    FOR SHARE
),"""


def _free(row: str) -> str:
    """The condition that the lease ``row`` may be claimed: nobody holds it, or nobody alive."""
    return f"""({row}.owner IS NULL OR {row}.expires_at < now() OR (
        {row}.holder_pid IS NOT NULL
        AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = {row}.holder_pid)))"""


def _visible(pid: str) -> str:
    """``pid`` if this role sees it in ``pg_stat_activity``, else NULL (expiry alone then).

    A pid claimants could not find there (a pooler's, a role's that cannot
    see the holder's sessions) would make a live holder's leases look free.
    """
    return f"(SELECT a.pid FROM pg_stat_activity a WHERE a.pid = {pid})"


class Leases:
    """The lease statements of one owner on one database (fleet workers and plain syncs).

    ``owner`` is the name written into the leases (default `default_worker_id`).
    """

    def __init__(self, db: Database, lease_seconds: float, owner: str | None = None) -> None:
        s = db.schema
        self.db, self.seconds, self.owner = db, lease_seconds, owner or default_worker_id()
        self._claim = f"""
            UPDATE {s}.leases AS l
            SET owner = $1, token = l.token + 1, claimed_at = now(),
                expires_at = now() + make_interval(secs => $2), holder_pid = {_visible("$6")}
            WHERE l.business_id = (
                SELECT business_id FROM {s}.leases AS c
                WHERE business_id = ANY($3::bigint[])
                  AND {_free("c")}
                  AND (finished_at IS NULL
                       OR finished_at < coalesce($4, now() - make_interval(secs => $5)))
                  AND (failed_at IS NULL
                       OR failed_at < coalesce($4, now() - make_interval(secs => $5)))
                ORDER BY greatest(finished_at, failed_at) NULLS FIRST, business_id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            RETURNING business_id, token"""
        self._renew = f"""
            UPDATE {s}.leases
            SET expires_at = now() + make_interval(secs => $4), holder_pid = {_visible("$5")}
            WHERE business_id = $1 AND owner = $2 AND token = $3 RETURNING 1"""
        self._release = f"""
            UPDATE {s}.leases SET owner = NULL, expires_at = NULL, holder_pid = NULL,
                finished_at = CASE WHEN $4 THEN now() ELSE finished_at END,
                failed_at = CASE WHEN $5::text IS NOT NULL THEN now() ELSE failed_at END,
                error = CASE WHEN $4 THEN NULL ELSE coalesce($5, error) END
            WHERE business_id = $1 AND owner = $2 AND token = $3"""
        self._pending = f"""
            SELECT count(*) FROM {s}.leases
            WHERE business_id = ANY($1::bigint[])
              AND NOT coalesce(finished_at >= $2, false)
              AND NOT coalesce(failed_at >= $2, false)"""
        self._register = f"""
            INSERT INTO {s}.leases (business_id) SELECT unnest($1::bigint[])
            ON CONFLICT DO NOTHING"""
        # SKIP LOCKED: a row locked by its holder's write (or another claim) counts
        # as held, so `take` keeps to its timeout instead of queueing for the lock.
        self._take = f"""
            UPDATE {s}.leases AS l SET owner = $2, token = l.token + 1, claimed_at = now(),
                expires_at = now() + make_interval(secs => $3), holder_pid = {_visible("$4")}
            WHERE l.business_id = (
                SELECT business_id FROM {s}.leases AS c
                WHERE business_id = $1 AND {_free("c")}
                FOR UPDATE SKIP LOCKED
            )
            RETURNING token"""
        self._holder = f"""
            SELECT owner, extract(epoch FROM expires_at - now())::float8 FROM {s}.leases
            WHERE business_id = $1"""

    async def register(self, business_ids: Sequence[int]) -> Any:
        """Add a lease row for each business; the database's ``now()``."""
        await self.db.query(self._register, list(business_ids), doing="register leases")
        return await self.db.query("SELECT now()", doing="read the clock")

    async def claim(self, business_ids: Sequence[int], since: Any, interval: float) -> Lease | None:
        """A due business nobody holds (skipping rows others are claiming), or ``None``.

        Due: neither finished nor failed since ``since`` (the worker's start),
        or, with ``since=None`` (follow mode), within the last ``interval`` s.
        Cancelled meanwhile, it holds nothing (see `_claimed`).
        """
        ids = list(business_ids)
        return await self._claimed(self._claim_once(ids, since, interval))

    async def _claim_once(self, ids: list[int], since: Any, interval: float) -> Lease | None:
        args = (self.owner, self.seconds, ids, since, interval, await self.db.presence())
        row = await self.db.query(self._claim, *args, fetch="row", doing="claim a lease")
        return None if row is None else Lease(row[0], self.owner, row[1])

    async def _take_once(self, business_id: int) -> Lease | None:
        args = (business_id, self.owner, self.seconds, await self.db.presence())
        token = await self.db.query(self._take, *args, doing="claim a lease")
        return None if token is None else Lease(business_id, self.owner, token)

    async def _claimed(self, statement: Coroutine[Any, Any, Lease | None]) -> Lease | None:
        """The lease a claiming ``statement`` got; if cancelled meanwhile, none held.

        The statement runs as a task of its own, waited out through a
        cancellation: a claim that commits just as its caller is cancelled
        (Ctrl-C, SIGTERM) would otherwise be held by nobody who knows it,
        refusing every other claimant until it expires. So it is released,
        then the cancellation goes on.
        """
        task = asyncio.ensure_future(statement)
        if not await wait_out(task, grace=self.seconds):
            return task.result()
        # A statement stuck past the lease time is given up: what it may claim lapses.
        if task.done() and not task.cancelled() and not task.exception() and (got := task.result()):
            await _release_surely(self, got)
        raise asyncio.CancelledError

    async def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry on by ``lease_seconds``; ``False`` once it was taken over.

        It also records the holder's current presence, in case it was lost
        and replaced since the lease was claimed.
        """
        pid = await self.db.presence()
        args = (lease.business_id, lease.owner, lease.token, self.seconds, pid)
        return bool(await self.db.query(self._renew, *args, doing="renew a lease"))

    async def release(self, lease: Lease, *, finished: bool, error: str | None = None) -> None:
        """Free the lease; record a fleet sync's end (``finished`` or ``error``) on its row."""
        args = (lease.business_id, lease.owner, lease.token, finished, error)
        await self.db.query(self._release, *args, doing="release a lease")

    async def pending(self, business_ids: Sequence[int], since: Any) -> int:
        """How many of the businesses nobody finished or failed since ``since``."""
        count = await self.db.query(self._pending, list(business_ids), since, doing="count pending")
        return int(count)

    async def take(self, business_id: int, timeout: float) -> Lease | Holder:
        """The lease of one business, whatever its schedule: a plain sync's claim.

        Waits up to ``timeout`` seconds for its holder to release it, to die
        (its presence gone) or to let it lapse; then returns that `Holder`
        instead. Cancelled meanwhile, it holds nothing (see `_claimed`).
        """
        await self.db.query(self._register, [business_id], doing="register a lease")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            lease = await self._claimed(self._take_once(business_id))
            if lease is not None:
                return lease
            left = deadline - loop.time()
            if left <= 0:
                row = await self.db.query(
                    self._holder, business_id, fetch="row", doing="read a lease"
                )
                if row is not None and row[0] is not None:  # else: just released, try again
                    return Holder(row[0], row[1])
            await asyncio.sleep(max(0.0, min(delay, left)))
            delay = min(delay * 2, 1.0)


async def _keep_renewed(
    leases: Leases, lease: Lease, *, tolerate: tuple[type[Exception], ...] = ()
) -> Exception | None:
    """Renew ``lease`` every third of its time: ``None`` once it is lost, or the error."""
    while True:
        await asyncio.sleep(leases.seconds / 3)
        try:
            if not await leases.renew(lease):
                return None
        except tolerate:
            continue
        except Exception as exc:
            return exc


@contextlib.asynccontextmanager
async def holding(
    leases: Leases, lease: Lease, *, tolerate: tuple[type[Exception], ...] = ()
) -> AsyncIterator[asyncio.Future[Exception | None]]:
    """Hold ``lease`` for the body of an ``async with``: the one renew loop of every holder.

    The lease is renewed every third of its time until the body ends, then
    released (unfinished) even when cancelled meanwhile, e.g. by Ctrl-C; that
    is a no-op when the body released it already or lost it. Yields the
    renewal: done when the lease was taken over (result ``None``) or a
    renewal failed (the error; errors of the ``tolerate`` types are retried
    at the next beat instead). A lease that lapses anyway is safe: the fence
    refuses its holder's next write with `LeaseLostError`.
    """
    renewal = asyncio.ensure_future(_keep_renewed(leases, lease, tolerate=tolerate))
    try:
        yield renewal
    finally:
        renewal.cancel()
        await _release_surely(leases, lease)


async def _release_surely(leases: Leases, lease: Lease) -> None:
    """Release ``lease`` (unfinished) even when cancelled meanwhile, then re-raise that.

    A failed release is dropped, and so is one still stuck ``lease_seconds``
    after a cancellation: the lease lapses then anyway (or at once, when this
    process's database sessions end).
    """
    release = asyncio.ensure_future(leases.release(lease, finished=False))
    cancelled = await wait_out(release, grace=leases.seconds)
    if release.done() and not release.cancelled():
        release.exception()
    if cancelled:
        raise asyncio.CancelledError
