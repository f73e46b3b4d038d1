"""Many workers, one set of cabinets: business leases in PostgreSQL, and follow mode.

`run_worker` is one process of a fleet. Every worker of a fleet is given the
same business ids and the same database; each business is synced by one
worker at a time, under a **row lease** in the sink's ``leases`` table:

- a worker claims a free (or expired) lease with ``UPDATE ... WHERE
  business_id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, which bumps
  the lease's ``token`` and sets ``expires_at = now() + lease_seconds``:
  workers racing for leases skip each other's rows instead of waiting;
- while it syncs, it renews the lease every third of ``lease_seconds``;
- every write of that sync is fenced by the token in the same statement
  (`PostgresSink` ``lease=``): once another worker has claimed the business,
  the old holder cannot write a single row, even if it was only paused;
- each lease records the holder's database session (the backend pid of a
  connection the sink keeps open): a worker killed with SIGKILL loses that
  session with its process, so its leases are free at once and another
  worker continues from the checkpoints (the pages it had committed stay,
  the pages in flight are fetched again); one whose machine vanished
  without closing its connections renews nothing, and its leases lapse
  after ``lease_seconds``.

Time is the database's (``now()``), so the clocks of the workers' machines do
not matter. Quotas are shared by giving every worker's client the same
`RedisLimiter`.

Without ``follow``, a worker syncs each business that nobody finished (or
failed) since the worker started, waits for the ones others hold (taking
them over if their holder dies), and returns when all are done. With
``follow``, it never returns: a business is due again ``interval`` seconds
after its last sync finished.

A plain `sync` into the same `PostgresSink` takes the same lease row on each
of its businesses (`PostgresSink.claim`), so it never overlaps a worker on
one business: a worker skips a business a sync holds, and a sync waits
``lock_timeout`` for a worker's, then fails.

`follow` is the same loop for one process and any sink (SQLite, JSON Lines).

The modules, bottom up: `leases` (the lease statements, the fence, the one
renew loop; below the PostgreSQL sink, which takes leases for plain syncs),
``_report`` (`WorkerReport`), ``_running`` (the loop both modes share),
``_worker`` (`run_worker`) and ``_follow`` (`follow`). The public names load
on first use (PEP 562): the sink imports `leases` without loading the worker,
which imports the sink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # what type checkers see; at run time, __getattr__ below
    from ._follow import follow
    from ._report import WorkerReport
    from ._running import DEFAULT_INTERVAL
    from ._worker import run_worker
    from .leases import DEFAULT_LEASE_SECONDS, Lease, LeaseLostError

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_LEASE_SECONDS",
    "Lease",
    "LeaseLostError",
    "WorkerReport",
    "follow",
    "run_worker",
]

# The module that defines each public name (the imports above, for run time).
_MODULES = dict.fromkeys(["DEFAULT_LEASE_SECONDS", "Lease", "LeaseLostError"], ".leases")
_MODULES.update(
    DEFAULT_INTERVAL="._running", WorkerReport="._report", run_worker="._worker", follow="._follow"
)

if not TYPE_CHECKING:  # hidden from type checkers: a misspelt name stays an error, not Any
    __getattr__, __dir__ = attach(__name__, _MODULES, __all__)
