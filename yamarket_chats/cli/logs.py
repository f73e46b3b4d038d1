"""The library's log records on the command's stderr, one escaped line each."""

from __future__ import annotations

import argparse
import logging
import sys

from .output import log_text

__all__ = ["configure_logging"]


def configure_logging(args: argparse.Namespace) -> None:
    """The library's log records on stderr: only with -v, or for long-running workers.

    A one-shot command reports retries and 420s in its summary and its failure
    in one line; a fleet worker runs for days, so its warnings are shown. A
    sink's warnings are always shown: a damaged line of a JSONL file was moved
    aside, and the user must learn where (one line each).
    """
    verbose = getattr(args, "verbose", 0)
    service = getattr(args, "follow", False) or getattr(args, "worker", False)
    level = logging.DEBUG if verbose > 1 else logging.WARNING if verbose or service else None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("yamarket-chats: %(levelname)s: %(message)s"))
    if level is None:
        handler.addFilter(_from_sinks)
        level = logging.WARNING
    logger = logging.getLogger("yamarket_chats")
    for old in [h for h in logger.handlers if isinstance(h.formatter, _OneLineFormatter)]:
        logger.removeHandler(old)  # an earlier run() in this process (tests, embedding)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _from_sinks(record: logging.LogRecord) -> bool:
    return record.name == "yamarket_chats.sinks" or record.name.startswith("yamarket_chats.sinks.")


class _OneLineFormatter(logging.Formatter):
    """A record on one line of a terminal: line breaks and control characters escaped
    (a record may quote a file's bytes or a path)."""

    def format(self, record: logging.LogRecord) -> str:
        return log_text(super().format(record))
