"""The library's log records on the command's stderr, one escaped line each."""

from __future__ import annotations

import argparse
import logging
import sys

from .output import log_text

__all__ = ["CLI_LOGGER", "configure_logging", "warnings_shown"]

#: The command's own records (the first retry's notice), shown with or without -v.
CLI_LOGGER = "yamarket_chats.cli"


def warnings_shown(args: argparse.Namespace) -> bool:
    """Whether every WARNING of the library reaches stderr: with -v, or for long-running
    workers (``--follow``, ``--worker``), whose warnings are their only news."""
    verbose = getattr(args, "verbose", 0)
    return bool(verbose) or getattr(args, "follow", False) or getattr(args, "worker", False)


def configure_logging(args: argparse.Namespace) -> None:
    """The library's log records on stderr: all its warnings only when `warnings_shown`.

    Otherwise a one-shot command reports retries and 420s in its summary and
    its failure in one line; shown anyway are a sink's warnings (a damaged
    line of a JSONL file was moved aside, and the user must learn where, one
    line each) and the command's own (the first retry of a run: a host that
    never answers would otherwise keep it silent for a minute).
    """
    level = logging.DEBUG if getattr(args, "verbose", 0) > 1 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("yamarket-chats: %(levelname)s: %(message)s"))
    if not warnings_shown(args):
        handler.addFilter(_shown_when_quiet)
    logger = logging.getLogger("yamarket_chats")
    for old in [h for h in logger.handlers if isinstance(h.formatter, _OneLineFormatter)]:
        logger.removeHandler(old)  # an earlier run() in this process (tests, embedding)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _shown_when_quiet(record: logging.LogRecord) -> bool:
    return any(
        record.name == name or record.name.startswith(name + ".")
        for name in ("yamarket_chats.sinks", CLI_LOGGER)
    )


class _OneLineFormatter(logging.Formatter):
    """A record on one line of a terminal: line breaks and control characters escaped
    (a record may quote a file's bytes or a path)."""

    def format(self, record: logging.LogRecord) -> str:
        return log_text(super().format(record))
