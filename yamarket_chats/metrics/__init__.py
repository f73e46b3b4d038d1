"""Prometheus metrics of a client and of its syncs (``pip install 'yamarket-chats[metrics]'``).

Two parts, so that counting costs nothing until something reads it:

- `SyncMetrics` (no dependency): a `yamarket_chats.ingest.SyncObserver` that
  counts, per business, the pages and messages stored, the syncs completed
  and failed, the leases held and when each business last synced. Pass it as
  ``sync(..., observer=...)`` (``follow`` and ``run_worker`` pass it on).
- `ChatsCollector` (needs prometheus-client): reads the client's own counters
  (``client.stats``, kept whether or not anyone reads them) and a
  `SyncMetrics` at each scrape, and yields the ``yamarket_chats_*`` families.
  Register it on a registry of yours::

      from prometheus_client import REGISTRY
      REGISTRY.register(ChatsCollector(client, syncs))

The CLI serves the same families with ``yamarket-chats sync --metrics-port``;
docs/fleet.md lists them and what to alert on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # what type checkers see; at run time, __getattr__ below
    from ._collector import ChatsCollector
    from ._syncs import BusinessSyncStats, SyncMetrics

__all__ = ["BusinessSyncStats", "ChatsCollector", "SyncMetrics"]

# ChatsCollector imports prometheus-client: only when asked for.
_MODULES = {
    "BusinessSyncStats": "._syncs",
    "SyncMetrics": "._syncs",
    "ChatsCollector": "._collector",
}

if not TYPE_CHECKING:  # hidden from type checkers: a misspelt name stays an error, not Any
    __getattr__, __dir__ = attach(__name__, _MODULES, __all__)
