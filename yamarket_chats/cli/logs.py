"""What the command writes besides its data: log records and its own lines, as text or JSON.

Text (the default) is one escaped line per record on stderr. ``--log-format
json`` is for log collectors (a container's stdout and stderr): then every
line the command writes on either stream is one JSON object: the library's
records, asyncio's and aiohttp's, the command's own lines (`say`: summaries,
a failure, an interruption), with ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message`` and, when a record is about them, ``business_id``,
``method``, ``attempt`` and ``status``. The progress display is off. The
key and token are masked in every field.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from .output import log_text, masked

__all__ = ["CLI_LOGGER", "FIELDS", "configure_logging", "json_logs", "say", "warnings_shown"]

#: The command's own records (the first retry's notice), shown with or without -v.
CLI_LOGGER = "yamarket_chats.cli"

#: The record attributes (``extra=``) a JSON line carries when a record has them.
FIELDS = ("business_id", "method", "attempt", "status")

# json.dumps escapes the C0 controls; DEL and the C1 controls (0x9B is a
# terminal's CSI) are escaped too, and so are the Unicode line separators,
# which some readers (Python's str.splitlines) take for line breaks: one
# record stays one line, and a tail of the log cannot drive a terminal.
_ESCAPES = {c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x2028, 0x2029]}


class _Output:
    """How this process writes: set once by `configure_logging`."""

    json = False
    secrets: tuple[str, ...] = ()


def json_logs() -> bool:
    """Whether the command writes JSON lines (``--log-format json``)."""
    return _Output.json


def warnings_shown(args: argparse.Namespace) -> bool:
    """Whether every WARNING of the library reaches stderr: with -v, or for long-running
    workers (``--follow``, ``--worker``), whose warnings are their only news."""
    verbose = getattr(args, "verbose", 0)
    return bool(verbose) or getattr(args, "follow", False) or getattr(args, "worker", False)


def configure_logging(args: argparse.Namespace, secrets: Iterable[str | None] = ()) -> None:
    """The library's log records on stderr: all its warnings only when `warnings_shown`.

    Otherwise a one-shot command reports retries and 420s in its summary and
    its failure in one line; shown anyway are a sink's warnings (a damaged
    line of a JSONL file was moved aside, and the user must learn where, one
    line each) and the command's own (the first retry of a run: a host that
    never answers would otherwise keep it silent for a minute).
    """
    _Output.json = getattr(args, "log_format", "text") == "json"
    _Output.secrets = tuple(s for s in secrets if s)
    formatter: logging.Formatter = (
        _JsonFormatter()
        if _Output.json
        else _OneLineFormatter("yamarket-chats: %(levelname)s: %(message)s")
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    if not warnings_shown(args):
        handler.addFilter(_shown_when_quiet)
    logger = logging.getLogger("yamarket_chats")
    root = logging.getLogger()
    for owner in (logger, root):
        for old in [h for h in owner.handlers if isinstance(h.formatter, _OURS)]:
            owner.removeHandler(old)  # an earlier run() in this process (tests, embedding)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if getattr(args, "verbose", 0) > 1 else logging.WARNING)
    logger.propagate = False
    if _Output.json:  # asyncio's and aiohttp's records too, never Python's plain last resort
        others = logging.StreamHandler(sys.stderr)
        others.setFormatter(_JsonFormatter())
        others.setLevel(logging.WARNING)
        root.addHandler(others)


def say(
    text: str, *, stream: TextIO | None = None, level: int = logging.INFO, **fields: Any
) -> None:
    """One line of the command's own (a summary, a failure), as text or a JSON object.

    ``stream``: stdout for the command's results, stderr (the default) for
    news about the run. ``fields`` go into the JSON object only.
    """
    out = sys.stderr if stream is None else stream
    if _Output.json:
        line = _json_line(time_=None, level=level, logger=CLI_LOGGER, message=text, fields=fields)
    else:
        line = text
    out.write(line + "\n")  # one write: a record from another thread cannot split the line
    out.flush()


def _json_line(
    *, time_: float | None, level: int, logger: str, message: str, fields: dict[str, Any]
) -> str:
    when = (
        dt.datetime.now(dt.timezone.utc)
        if time_ is None
        else dt.datetime.fromtimestamp(time_, dt.timezone.utc)
    )
    data: dict[str, Any] = {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": logging.getLevelName(level),
        "logger": logger,
        "message": masked(message, _Output.secrets),
    }
    for key, value in fields.items():
        if value is not None:
            data[key] = masked(value, _Output.secrets) if isinstance(value, str) else value
    text = json.dumps(data, ensure_ascii=False, default=str)
    return text.translate(_ESCAPES)


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


class _JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line (`_json_line`)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {name: getattr(record, name, None) for name in FIELDS}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return _json_line(
            time_=record.created,
            level=record.levelno,
            logger=record.name,
            message=record.getMessage(),
            fields=fields,
        )


_OURS = (_OneLineFormatter, _JsonFormatter)
