"""``yamarket-chats``: sync, read and send Yandex Market chats from the command line.

The command's layers, each a module of this package: `parser` (the options),
`commands` (one module per family: sync, read, send, the fakes), `connect`
(the client from the options), `sink` (the sync's sink, opened off the event
loop), `waits` and `progress` (the wall-clock waits on limits, the progress
display and summary), `output` (tables, TSV, JSON Lines, escaping), `logs`
and `retries` (what reaches stderr; the first retry of a run always does),
`signals`, `failures` (exit codes, one line per failure) and `app` (running
it all). `main` is the console script's; `run` returns the exit code instead
of exiting. ``python -m yamarket_chats`` runs the same command.

The exit codes are listed in `failures` (and by ``yamarket-chats --help``).
"""

from __future__ import annotations

from .app import main, run

__all__ = ["main", "run"]
