"""The argument parser of ``yamarket-chats``: one small function per command.

Options several commands share (the connection, the chat filters, a chat's
ids, ``--json``) are defined once. The fake server's options come from the
fake's own light module of options: the fake itself (aiohttp's server side)
is not imported to parse a command. Every id (business, chat, message, order)
is read by `yamarket_chats._ids.parse_id`: ASCII digits within the spec's
int64, refused by argparse (exit 2) before anything is opened.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .. import __version__
from .._ids import parse_id
from ..models import ChatContextType, ChatStatus, ChatType
from ..testing._options import add_arguments as add_fake_options
from .connect import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL, ENV_OAUTH_TOKEN
from .failures import EXIT_CODES

__all__ = ["DEFAULT_DB", "build_parser"]

DEFAULT_DB = "yamarket-chats.sqlite3"

_JSON_HELP = "JSON Lines: one object per line (API field names)"

_Commands = Any  # what add_subparsers returns (argparse._SubParsersAction, a private class)


def _id(text: str) -> int:
    """An id: argparse names the argument in front of the reason."""
    try:
        return parse_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from ``90``, ``45s``, ``30m``, ``2h``, ``1d`` or a sum such as ``1h30m``."""
    parts = _DURATION.findall(text)
    bare = [n for n, u in parts if not u]
    if not text or "".join(n + u for n, u in parts) != text or (bare and len(parts) > 1):
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (e.g. 90s, 30m, 2h, 1d, 1h30m; a bare number is seconds)"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key (default: ${ENV_API_KEY}; the variable keeps it out of `ps`)",
    )
    group.add_argument(
        "--oauth-token", metavar="TOKEN", help=f"OAuth token instead (default: ${ENV_OAUTH_TOKEN})"
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API address (default: ${ENV_BASE_URL}, else {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--timeout", type=float, default=15.0, help="seconds per request (%(default)s)"
    )
    group.add_argument(
        "--max-retries", type=int, default=5, help="retries of a failed request (%(default)s)"
    )
    group.add_argument(
        "--max-wait",
        type=_seconds,
        metavar="SECONDS",
        help="give up a call (exit 5) that would wait longer than this for rate limits, retries"
        " included (default: 60; sync: no bound, it waits for a spent quota to reset)",
    )
    _add_logging(group)
    return parent


def _add_logging(group: Any) -> None:
    """``-v`` and ``--log-format``: every command that logs has them."""
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log retries, 420s and long waits (-v), every request (-vv) on stderr",
    )
    group.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines (default) or one JSON object per line on stdout and stderr, for log"
        " collectors (no progress display)",
    )


def _logging_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    _add_logging(parent.add_argument_group("logging"))
    return parent


def _filter_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("chat filters (repeat an option for several values)")
    group.add_argument(
        "--status", dest="statuses", action="append", choices=[s.value for s in ChatStatus]
    )
    group.add_argument("--type", dest="types", action="append", choices=[t.value for t in ChatType])
    group.add_argument(
        "--context-type",
        dest="context_types",
        action="append",
        choices=[c.value for c in ChatContextType],
    )
    group.add_argument(
        "--order-id", dest="order_ids", action="append", type=_id, metavar="ORDER_ID"
    )
    return parent


def _chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("business_id", type=_id, metavar="BUSINESS_ID")
    parser.add_argument("chat_id", type=_id, metavar="CHAT_ID")


def _sync_targets(p: argparse.ArgumentParser) -> None:
    """Where a sync writes, and how it shares the sink with other syncs."""
    target = p.add_mutually_exclusive_group()
    target.add_argument("--db", type=Path, help=f"SQLite file to sync into (default: {DEFAULT_DB})")
    target.add_argument("--jsonl", type=Path, help="append JSON Lines to this file instead")
    target.add_argument(
        "--postgres-url",
        metavar="URL",
        help="sync into PostgreSQL, e.g. postgresql://user@host/db or 'host=H dbname=D user=U'"
        " (needs the postgres extra; give the password in $PGPASSWORD rather than here)",
    )
    p.add_argument(
        "--worker",
        action="store_true",
        help="one worker of a fleet: the workers on one --postgres-url share the business ids,"
        " each synced by one worker at a time (leases in PostgreSQL)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="keep running: sync each business again --interval seconds after its last sync",
    )
    p.add_argument(
        "--interval", type=float, metavar="S", help="seconds between syncs with --follow (60)"
    )
    p.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="when another sync holds the sink, wait this long for it (default: exit 6 at once)",
    )


def _add_sync(
    commands: _Commands, conn: argparse.ArgumentParser, filters: argparse.ArgumentParser
) -> None:
    p = commands.add_parser(
        "sync",
        parents=[conn, filters],
        help="copy every chat and new message into SQLite or JSON Lines",
        description=(
            "Incremental sync: lists the chats of each business id and fetches only the "
            "messages after the last one stored. Run it again and again; interrupt it "
            "any time (Ctrl-C): nothing fetched is lost, the next run continues."
        ),
    )
    p.add_argument("business_ids", nargs="+", type=_id, metavar="BUSINESS_ID")
    _sync_targets(p)
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="chats fetched at once per business (%(default)s)",
    )
    p.add_argument(
        "--max-businesses",
        type=_positive_int,
        metavar="N",
        help="businesses synced at once, the rest queued (default: 64); with --worker, the"
        " leases this worker holds at once: give the fleet at least (businesses / N) workers,"
        " or the cabinets left over wait with their quota unused",
    )
    p.add_argument(
        "--redis-url",
        metavar="URL",
        help=(
            "share the quotas with every worker using this Redis (e.g. redis://host:6379/0;"
            " needs the redis extra)"
        ),
    )
    p.add_argument(
        "--redis-cluster",
        action="store_true",
        help="--redis-url is a node of a Redis Cluster",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve /metrics (Prometheus), /healthz and /readyz on this port (0: any free one;"
        " needs the metrics extra)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --metrics-port listens on (%(default)s: this machine only; 0.0.0.0:"
        " every interface, as probes and scrapers from outside a container need)",
    )
    p.add_argument(
        "--all-chats",
        action="store_true",
        help="also check chats whose updatedAt is unchanged since the last run",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")


def _add_reads(
    commands: _Commands, conn: argparse.ArgumentParser, filters: argparse.ArgumentParser
) -> None:
    p = commands.add_parser(
        "chats", parents=[conn, filters], help="print a business's chats as a table or JSON"
    )
    p.add_argument("business_id", type=_id, metavar="BUSINESS_ID")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)

    p = commands.add_parser("history", parents=[conn], help="print a chat's messages")
    _chat_arguments(p)
    p.add_argument(
        "--from", dest="message_id_from", type=_id, metavar="MESSAGE_ID",
        help="start at this message id",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help=_JSON_HELP)


def _add_send(commands: _Commands, conn: argparse.ArgumentParser) -> None:
    p = commands.add_parser("send", parents=[conn], help="send a message or a file to a chat")
    _chat_arguments(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("-m", "--message", help="text to send (1..4096 characters)")
    what.add_argument("-f", "--file", type=Path, help="file to send (up to 5 MiB)")


def _desk_source(p: argparse.ArgumentParser) -> None:
    """The sink a desk command reads (never locked: a sync may be writing it)."""
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--db", type=Path, help=f"SQLite file a sync keeps current (default: {DEFAULT_DB})"
    )
    source.add_argument(
        "--postgres-url",
        metavar="URL",
        help="read PostgreSQL instead (needs the postgres extra; the password in $PGPASSWORD)",
    )


def _add_desk(commands: _Commands, logging_options: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "due",
        parents=[logging_options],
        help="print the chats waiting for your answer, oldest first (from the sink, no request)",
        description=(
            "The reply-due queue: chats whose status is NEW or WAITING_FOR_PARTNER as the last"
            " sync stored them, oldest wait first. A chat has waited since the customer's first"
            " message after your last one (or since it was created). Reads the sink only."
        ),
    )
    _desk_source(p)
    p.add_argument(
        "--older-than",
        type=_duration,
        metavar="AGE",
        help="only chats waiting at least this long: 90s, 30m, 2h, 1d, 1h30m",
    )
    p.add_argument(
        "--business",
        dest="business_ids",
        action="extend",
        nargs="+",
        type=_id,
        metavar="BUSINESS_ID",
        help="only these businesses (repeatable)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON Lines: business_id, chat_id, status, waiting_since (ISO 8601) and the rest",
    )


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:8765)")
    return host, _port(port)


def _add_mcp(commands: _Commands, conn: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "mcp",
        parents=[conn],
        help="serve the desk to AI assistants (MCP): the queue, chats, confirmed replies",
        description=(
            "An MCP server over the sink and the API, on stdio (default) or streamable HTTP:"
            " tools list_waiting_chats, read_chat and send_reply. Read-only unless"
            " --allow-send; then every reply is shown to the human in the MCP client, who"
            " must accept it before it is sent. Needs the mcp extra."
        ),
    )
    _desk_source(p)
    p.add_argument(
        "--allow-send",
        action="store_true",
        help="let send_reply send, each reply confirmed by the human (MCP elicitation)",
    )
    p.add_argument(
        "--http",
        type=_host_port,
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (no"
        " authentication: keep it on loopback or behind a proxy that authenticates)",
    )


def _add_fakes(commands: _Commands) -> None:
    fake = commands.add_parser(
        "fake-server", help="run the fake Market API on loopback (for trying things out)"
    )
    add_fake_options(fake)
    p = commands.add_parser(
        "demo",
        help="sync a built-in fake API into SQLite twice (full, then incremental)",
        description=(
            "Starts a fake API in-process with a few thousand messages, syncs them into a "
            "fresh SQLite file, adds a few messages and syncs again: the second run "
            "fetches only the new ones."
        ),
    )
    p.add_argument("--db", type=Path, help="SQLite file to create (default: a temporary one)")
    p.add_argument("--chats", type=_positive_int, default=30, help="per business (%(default)s)")
    p.add_argument("--messages", type=_positive_int, default=60, help="per chat (%(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the summaries")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``yamarket-chats``."""
    parser = argparse.ArgumentParser(
        prog="yamarket-chats",
        description="Sync, read and send Yandex Market seller-buyer chats.",
        epilog=(
            f"Credentials come from --api-key or ${ENV_API_KEY} (or --oauth-token / "
            f"${ENV_OAUTH_TOKEN}), the API's address from --base-url or ${ENV_BASE_URL}. "
            "Try `yamarket-chats demo` for a run against a built-in fake API. "
            + EXIT_CODES.replace("\n", " ")
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Not required: bare `yamarket-chats` shows this help (`run` prints it).
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    conn, filters = _connection_options(), _filter_options()
    _add_sync(commands, conn, filters)
    _add_reads(commands, conn, filters)
    _add_send(commands, conn)
    _add_desk(commands, _logging_options())
    _add_mcp(commands, conn)
    _add_fakes(commands)
    return parser
