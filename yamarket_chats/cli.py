"""``yamarket-chats``: sync, read and send Yandex Market chats from the command line.

Exit codes: 0 done; 1 an API or storage error; 2 bad arguments; 3 the key or
token was refused (HTTP 401/403); 4 the API is unreachable (network, timeout);
5 rate limits still exhausted after waiting; 6 the sink is in use by another
sync; 130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (what was fetched is
saved); 141 the output pipe was closed (e.g. by ``head``). Failures print one
line on stderr, never the key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TextIO

import aiohttp
import msgspec

from . import __version__
from ._progress import ProgressDisplay, TimedLimiter, make_display, rich_available, summary
from .client import ChatsClient
from .errors import (
    ApiError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    SinkLockedError,
    TransportError,
    UnauthorizedError,
    YandexMarketError,
)
from .ingest import Sink, SyncReport, sync
from .limits import DEFAULT_LIMITS, Limiter, Limits, RateLimit
from .models import Chat, ChatContextType, ChatMessage, ChatStatus, ChatType
from .sinks import JsonlSink, PostgresSink, SQLiteSink

__all__ = ["main", "run"]

ENV_API_KEY = "YANDEX_MARKET_API_KEY"
ENV_OAUTH_TOKEN = "YANDEX_MARKET_OAUTH_TOKEN"
ENV_DEBUG = "YAMARKET_CHATS_DEBUG"
DEFAULT_BASE_URL = "https://api.partner.market.yandex.ru"
DEFAULT_DB = "yamarket-chats.sqlite3"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_RATE_LIMITED = 0, 1, 2, 3, 4, 5
EXIT_SINK_LOCKED = 6
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130; SIGTERM gives 143
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE

_encoder = msgspec.json.Encoder()


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived outside the command's own cancellation window.

    A KeyboardInterrupt, because asyncio lets only that (and SystemExit) out of
    a callback or a task step; any other exception raised there by a signal
    handler would be logged and swallowed, and the command would run on.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupted(signum: int, frame: object) -> None:
    # Only the first signal unwinds the command: a second one, arriving while the
    # first is handled, would escape the handling as a traceback. It ends the
    # process at once instead (the user insists; nothing is left to save).
    for sig in _SIGNALS:
        signal.signal(sig, _exit_now)
    raise _Interrupted(signum)


def _exit_now(signum: int, frame: object) -> None:
    os.write(2, b"yamarket-chats: interrupted\n")
    os._exit(128 + signum)


def install_signal_handlers() -> None:
    """Turn SIGINT and SIGTERM into a clean exit (130 / 143) instead of the defaults."""
    for sig in _SIGNALS:
        with contextlib.suppress(ValueError):  # not the main thread: leave them be
            signal.signal(sig, _raise_interrupted)


def _ignore_signals() -> None:
    """From here on the process is exiting with its code: signals change nothing.

    Python's shutdown puts the default handlers back in place of any Python
    handler (not of SIG_IGN), and a signal then would kill the process after
    it has printed its result, with -SIGNAL instead of its exit code.
    """
    for sig in _SIGNALS:
        with contextlib.suppress(ValueError):
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered on exit) while their handlers change hands."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class UsageError(Exception):
    """Arguments that parse but cannot be used (exit code 2)."""


# -- arguments ------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


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
    group.add_argument("--base-url", default=DEFAULT_BASE_URL, help="API address (%(default)s)")
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
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log retries, 420s and long waits (-v), every request (-vv) on stderr",
    )
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
    group.add_argument("--order-id", dest="order_ids", action="append", type=_positive_int)
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``yamarket-chats``."""
    conn, filters = _connection_options(), _filter_options()
    parser = argparse.ArgumentParser(
        prog="yamarket-chats",
        description="Sync, read and send Yandex Market seller-buyer chats.",
        epilog=(
            f"Credentials come from --api-key or ${ENV_API_KEY} (or --oauth-token / "
            f"${ENV_OAUTH_TOKEN}). Try `yamarket-chats demo` for a run against a built-in "
            "fake API. " + __doc__.split("\n\n", 1)[1].replace("\n", " ")  # the exit codes
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("business_ids", nargs="+", type=_positive_int, metavar="BUSINESS_ID")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--db", type=Path, help=f"SQLite file to sync into (default: {DEFAULT_DB})")
    target.add_argument("--jsonl", type=Path, help="append JSON Lines to this file instead")
    target.add_argument(
        "--postgres-url",
        metavar="URL",
        help="sync into PostgreSQL, e.g. postgresql://user@host/db (needs the postgres extra;"
        " give the password in $PGPASSWORD rather than in the URL)",
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
        "--concurrency",
        type=_positive_int,
        default=4,
        help="chats fetched at once per business (%(default)s)",
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
        "--lock-timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="when another sync holds the sink, wait this long for it (default: exit 6 at once)",
    )
    p.add_argument(
        "--all-chats",
        action="store_true",
        help="also check chats whose updatedAt is unchanged since the last run",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")

    p = commands.add_parser(
        "chats", parents=[conn, filters], help="print a business's chats as a table or JSON"
    )
    p.add_argument("business_id", type=_positive_int, metavar="BUSINESS_ID")
    p.add_argument(
        "--json", action="store_true", help="JSON Lines: one object per line (API field names)"
    )

    p = commands.add_parser("history", parents=[conn], help="print a chat's messages")
    p.add_argument("business_id", type=_positive_int, metavar="BUSINESS_ID")
    p.add_argument("chat_id", type=_positive_int, metavar="CHAT_ID")
    p.add_argument(
        "--from", dest="message_id_from", type=_positive_int, metavar="MESSAGE_ID",
        help="start at this message id",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true", help="JSON Lines: one object per line (API field names)"
    )

    p = commands.add_parser("send", parents=[conn], help="send a message or a file to a chat")
    p.add_argument("business_id", type=_positive_int, metavar="BUSINESS_ID")
    p.add_argument("chat_id", type=_positive_int, metavar="CHAT_ID")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("-m", "--message", help="text to send (1..4096 characters)")
    what.add_argument("-f", "--file", type=Path, help="file to send (up to 5 MiB)")

    p = commands.add_parser(
        "fake-server", help="run the fake Market API on loopback (for trying things out)"
    )
    from .testing.__main__ import add_arguments as add_fake_arguments

    add_fake_arguments(p)

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
    return parser


# -- commands -------------------------------------------------------------------


def _client(args: argparse.Namespace, limiter: Limiter | None = None) -> ChatsClient:
    """A client from the options; an option beats its environment variable."""
    if args.api_key and args.oauth_token:
        raise UsageError("pass only one of --api-key and --oauth-token")
    api_key, token = args.api_key, args.oauth_token
    key_source = "--api-key" if api_key else "--oauth-token"
    if not api_key and not token:
        api_key = os.environ.get(ENV_API_KEY) or None
        token = None if api_key else os.environ.get(ENV_OAUTH_TOKEN) or None
        key_source = f"${ENV_API_KEY}" if api_key else f"${ENV_OAUTH_TOKEN}"
    if not api_key and not token:
        raise UsageError(f"no credentials: pass --api-key or set {ENV_API_KEY}")
    max_wait = _default_max_wait(args) if args.max_wait is None else {"max_wait": args.max_wait}
    try:
        return ChatsClient(
            api_key or None,
            oauth_token=None if api_key else token,
            base_url=args.base_url,
            timeout=args.timeout,
            max_retries=args.max_retries,
            limiter=limiter,
            **max_wait,
        )
    except InvalidRequestError as exc:
        # The client checks its arguments (never echoing a key, nor a URL's
        # password); the message names its parameter: say the option instead.
        field, _, rest = str(exc).partition(" ")
        options = {"api_key": key_source, "oauth_token": key_source}
        option = options.get(field, "--" + field.replace("_", "-"))
        raise UsageError(f"{option} {rest}" if field in _CLIENT_OPTIONS else str(exc)) from None


# The client's parameters that come from an option (or the key's variable).
_CLIENT_OPTIONS = frozenset(
    {"api_key", "oauth_token", "base_url", "timeout", "max_retries", "max_wait"}
)


def _default_max_wait(args: argparse.Namespace) -> dict[str, float | None]:
    """A sync is a bulk job: it waits out a spent quota; other commands keep the client's bound."""
    return {"max_wait": None} if args.command == "sync" else {}


def _check_utf8(text: str, what: str) -> str:
    """Refuse text holding bytes that were not UTF-8 (Python keeps them as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else repr(bad)
        raise UsageError(
            f"{what} is not valid UTF-8 ({byte} at character {exc.start});"
            " check the terminal's or the file's encoding"
        ) from None
    return text


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "statuses": args.statuses,
        "types": args.types,
        "context_types": args.context_types,
        "order_ids": args.order_ids,
    }


async def _run_sync(
    title: str,
    client: ChatsClient,
    business_ids: Sequence[int],
    sink: Sink,
    display: ProgressDisplay,
    out: TextIO | None,
    **options: Any,
) -> SyncReport:
    """A sync with its display; on interruption, say what was kept, then re-raise."""
    last = SyncReport()

    def progress(report: SyncReport) -> None:
        nonlocal last
        last = report
        display.update(report)

    display.start(title)
    try:
        report = await sync(client, business_ids, sink, progress=progress, **options)
    except BaseException as exc:
        display.stop(failed=True)
        if last.pages or isinstance(exc, asyncio.CancelledError):
            print(
                f"{title}: stopped; saved {last.messages} new messages from {last.pages} pages,"
                " run again to continue",
                file=sys.stderr,
                flush=True,
            )
        raise
    display.stop()
    if out is not None:
        print(f"{title}: {summary(report, display.waited())}", file=out, flush=True)
    return report


class _OpenableSink(Sink, Protocol):
    """A sink `sync` opens and closes itself (``async with``)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


def _sync_sink(args: argparse.Namespace) -> _OpenableSink:
    """The sink `sync` writes into, from --db / --jsonl / --postgres-url."""
    if args.worker and not args.postgres_url:
        raise UsageError("--worker needs --postgres-url: the workers' leases live in PostgreSQL")
    if args.interval is not None and (not args.follow or args.interval < 0):
        raise UsageError("--interval takes seconds >= 0 and goes with --follow")
    if args.postgres_url:
        import importlib.util

        if importlib.util.find_spec("asyncpg") is None:
            raise UsageError("--postgres-url needs asyncpg: pip install 'yamarket-chats[postgres]'")
        return PostgresSink(args.postgres_url, lock_timeout=args.lock_timeout)
    if args.jsonl:
        return JsonlSink(args.jsonl, lock_timeout=args.lock_timeout)
    return SQLiteSink(args.db or DEFAULT_DB, lock_timeout=args.lock_timeout)


class _SinkUnusable(Exception):
    """The sink's file or database cannot be opened (exit code 1); says which."""


async def _open_sink(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> _OpenableSink:
    """The sync's sink, opened on `stack`; a file that cannot be used is named."""
    path = None if args.postgres_url else args.jsonl or args.db or DEFAULT_DB
    try:
        sink = _sync_sink(args)
        await stack.enter_async_context(sink)
    except (OSError, sqlite3.Error) as exc:
        if path is None:  # PostgreSQL: its URL may hold a password
            raise
        detail = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            named = exc.filename is not None and os.fspath(exc.filename) != os.fspath(path)
            detail = f"{exc.filename}: {exc.strerror}" if named else exc.strerror
        raise _SinkUnusable(f"cannot use {path} as the sink: {detail}") from None
    return sink


def _limiter(url: str | None, limits: dict[str, RateLimit | None] | None = None) -> TimedLimiter:
    """Quotas in Redis at `url`, else in this process; timed for the progress display."""
    if url is None:
        return TimedLimiter(Limits({**DEFAULT_LIMITS, **(limits or {})}, 4))
    try:
        from .redis_limits import RedisLimiter
    except ImportError:
        raise UsageError("--redis-url needs redis: pip install 'yamarket-chats[redis]'") from None
    return TimedLimiter(RedisLimiter(url))


async def _run_fleet(args: argparse.Namespace, client: ChatsClient, sink: Sink) -> int:
    """--worker / --follow: one line per business synced; exit 1 if a business failed."""
    from .fleet import DEFAULT_INTERVAL, follow, run_worker

    def synced(business_id: int, report: SyncReport) -> None:
        if not args.quiet:
            waited = min(report.waited_seconds, report.elapsed)
            print(f"business {business_id}: {summary(report, waited)}", flush=True)

    options: dict[str, Any] = {"concurrency": args.concurrency, **_filters(args)}
    options.update(skip_unchanged=not args.all_chats, on_synced=synced)
    interval = DEFAULT_INTERVAL if args.interval is None else args.interval
    if isinstance(sink, PostgresSink):
        done = await run_worker(
            client, args.business_ids, sink, follow=args.follow, interval=interval, **options
        )
    else:
        done = await follow(client, args.business_ids, sink, interval=interval, **options)
    for business_id, error in done.failed.items():
        reason = _one_line(str(error), ()).translate(_LOG_ESCAPES)  # the server's text
        print(f"yamarket-chats sync: business {business_id} failed: {reason}", file=sys.stderr)
    return EXIT_ERROR if done.failed else EXIT_OK


async def _cmd_sync(args: argparse.Namespace) -> int:
    limiter = _limiter(args.redis_url)
    client = _client(args, limiter)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(limiter.close)
        # Opened first: a sink in use (exit 6) or unusable fails before any request.
        sink = await _open_sink(args, stack)
        await stack.enter_async_context(client)
        if args.worker or args.follow:
            return await _run_fleet(args, client, sink)
        display = make_display(sys.stderr, quiet=args.quiet, clock=limiter.clock)
        await _run_sync(
            "sync",
            client,
            args.business_ids,
            sink,
            display,
            None if args.quiet else sys.stdout,
            concurrency=args.concurrency,
            skip_unchanged=not args.all_chats,
            **_filters(args),
        )
    return EXIT_OK


# Shown as is in TSV and terminal tables: a tab or newline inside a message
# would break the columns, and control characters could drive the terminal.
_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
_ESCAPES.update({c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in _ESCAPES})
# Line and paragraph separators; the bidirectional controls (Unicode's
# Bidi_Control: U+061C, U+200E-200F, U+202A-202E, U+2066-2069), which reorder
# what a terminal shows, so text could read differently from what it is.
_BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES.update({c: f"\\u{c:04x}" for c in [0x2028, 0x2029, *_BIDI_CONTROLS]})
# In a terminal table a cell may span lines and show backslashes as they are.
_CELL_ESCAPES = {c: e for c, e in _ESCAPES.items() if chr(c) not in "\\\t\n"}
# A log line shows backslashes as they are.
_LOG_ESCAPES = {c: e for c, e in _ESCAPES.items() if c != ord("\\")}


def tsv_field(value: object) -> str:
    """A value as one TSV field: backslash, tab, newline, CR and control characters escaped."""
    return "" if value is None else str(value).translate(_ESCAPES)


def _cell(value: object) -> str:
    return "" if value is None else str(value).translate(_CELL_ESCAPES)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A rich table on a terminal, else TSV; every cell is text, never markup."""
    if sys.stdout.isatty() and rich_available():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*headers)
        for row in rows:
            # Text() is never parsed as markup (user text like "[red]" stays text).
            table.add_row(*(Text(_cell(v)) for v in row))
        Console().print(table)
        return
    out = sys.stdout
    out.write("\t".join(headers) + "\n")
    for row in rows:
        out.write("\t".join(tsv_field(v) for v in row) + "\n")
    out.flush()


async def _json_lines(pages: AsyncIterator[Sequence[msgspec.Struct]]) -> None:
    """JSON Lines, a page at a time: whatever ends the run, each line is a whole object."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    async for items in pages:
        out.write(_encoder.encode_lines(items))
        out.flush()


def _chat_row(chat: Chat) -> list[object]:
    ctx = chat.context
    customer = ctx.customer.name if ctx.customer else None
    return [
        chat.chat_id,
        chat.status,
        chat.type,
        ctx.type,
        chat.order_id,
        customer,
        chat.updated_at,
    ]


def _message_row(m: ChatMessage) -> list[object]:
    files = [f"[{p.name}, {p.size} bytes]" for p in m.payload or ()]
    text = " ".join(part for part in [m.message, *files] if part)
    return [m.message_id, m.created_at, m.sender, text]


async def _cmd_chats(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        chats = client.iter_chats(args.business_id, **_filters(args))
        if args.json:
            await _json_lines(page.chats async for page in chats.pages())
        else:
            rows = [_chat_row(c) async for c in chats]
            _table(["chat", "status", "type", "context", "order", "customer", "updated"], rows)
    return EXIT_OK


async def _cmd_history(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        messages = client.iter_chat_history(
            args.business_id, args.chat_id, message_id_from=args.message_id_from
        )
        if args.json:
            await _json_lines(page.messages async for page in messages.pages())
        else:
            rows = [_message_row(m) async for m in messages]
            _table(["message", "created", "sender", "text"], rows)
    return EXIT_OK


async def _cmd_send(args: argparse.Namespace) -> int:
    if args.message is not None:
        _check_utf8(args.message, "--message")
    if args.file is not None:
        _check_utf8(args.file.name, "--file's name")
    async with _client(args) as client:
        if args.file is not None:
            await client.send_file_to_chat(args.business_id, args.chat_id, args.file)
            print(f"sent file {args.file.name.translate(_LOG_ESCAPES)} to chat {args.chat_id}")
        else:
            await client.send_message_to_chat(args.business_id, args.chat_id, args.message)
            print(f"sent message to chat {args.chat_id}")
    return EXIT_OK


async def _cmd_fake_server(args: argparse.Namespace) -> int:
    from .testing.__main__ import config_from_args, serve_forever

    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    await serve_forever(config, args.host, args.port)
    return EXIT_OK


# The demo's fake scales the hourly quotas down to one-second windows, and the
# client's buckets sit just under them, so limits visibly pace the sync.
_DEMO_WINDOW = 1.0
_DEMO_QUOTA = 15
_DEMO_LIMIT = RateLimit(12, _DEMO_WINDOW, burst=4)


async def _cmd_demo(args: argparse.Namespace) -> int:
    from .testing import FakeMarketConfig, run_fake_server

    businesses = (1001, 2002)
    config = FakeMarketConfig(
        businesses=businesses,
        chats_per_business=args.chats,
        messages_per_chat=args.messages,
        quota_window=_DEMO_WINDOW,
        quotas={"get_chats": _DEMO_QUOTA, "get_chat_history": _DEMO_QUOTA},
    )
    limits: dict[str, RateLimit | None] = {
        "get_chats": _DEMO_LIMIT,
        "get_chat_history": _DEMO_LIMIT,
    }
    out = sys.stdout
    with contextlib.ExitStack() as stack:
        if args.db is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="yamarket-demo-"))
            db_path, kept = Path(tmp) / "chats.sqlite3", "temporary; pass --db to keep it"
        else:
            db_path, kept = args.db, "kept"
            if db_path.exists():
                raise UsageError(f"--db {db_path} exists; the demo wants a fresh file")
        async with run_fake_server(config) as fake:
            total = sum(c.message_count for b in businesses for c in fake.market.chats(b))
            print(
                f"demo: fake API at {fake.url}: {len(businesses)} businesses x {args.chats} chats,"
                f" {total} messages; limits {_DEMO_LIMIT.amount} requests/s per business",
                file=out,
                flush=True,
            )
            limiter = _limiter(None, limits)
            async with (
                ChatsClient(api_key=fake.api_key, base_url=fake.url, limiter=limiter) as client,
                SQLiteSink(db_path) as sink,
            ):
                display = make_display(sys.stderr, quiet=args.quiet, clock=limiter.clock)
                await _run_sync("full sync", client, businesses, sink, display, out)
                changed = _add_demo_messages(fake.market, businesses)
                print(
                    f"demo: {sum(changed.values())} new messages posted in {len(changed)} chats",
                    file=out,
                    flush=True,
                )
                await _run_sync("incremental sync", client, businesses, sink, display, out)
        chats, messages = _count_rows(db_path)
        print(f"demo: {db_path} ({kept}): {chats} chats, {messages} messages", file=out)
    return EXIT_OK


def _add_demo_messages(market: Any, businesses: Sequence[int]) -> dict[int, int]:
    """Post a few buyer messages in a few chats of each business."""
    changed: dict[int, int] = {}
    for business_id in businesses:
        for k, chat in enumerate(market.chats(business_id)[:3]):
            for n in range(k + 1):
                market.add_message(business_id, chat.chat_id, f"demo: new question #{n + 1}")
            changed[chat.chat_id] = k + 1
    return changed


def _count_rows(path: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        chats = db.execute("SELECT count(*) FROM chats").fetchone()[0]
        messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    return int(chats), int(messages)


_COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "sync": _cmd_sync,
    "chats": _cmd_chats,
    "history": _cmd_history,
    "send": _cmd_send,
    "fake-server": _cmd_fake_server,
    "demo": _cmd_demo,
}


# -- running --------------------------------------------------------------------


def _failure(exc: BaseException) -> tuple[int, str]:
    """The exit code and one-line reason of a failure."""
    if isinstance(exc, (UnauthorizedError, ForbiddenError)):
        return EXIT_AUTH, (
            f"authentication failed (HTTP {exc.status}): the API key or token was refused "
            f"or may not access business {exc.business_id}"
        )
    if isinstance(exc, TransportError):
        if (
            exc.method.startswith("send_")
            and exc.__cause__ is not None
            and not isinstance(exc.__cause__, aiohttp.ClientConnectorError)
        ):
            # The request went out: the server may have acted on it.
            return EXIT_UNREACHABLE, (
                f"the connection failed after the request was sent; the message may have "
                f"been delivered, check the chat before sending again: {exc}"
            )
        return EXIT_UNREACHABLE, f"cannot reach the API: {exc}"
    if isinstance(exc, RateLimitError):
        return EXIT_RATE_LIMITED, f"rate limits still exhausted, try later: {exc}"
    if isinstance(exc, SinkLockedError):
        hint = str(exc).replace("pass lock_timeout (seconds)", "pass --lock-timeout SECONDS")
        return EXIT_SINK_LOCKED, f"sink in use by another sync: {hint}"
    if isinstance(exc, (InvalidRequestError, UsageError)):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, (ApiError, YandexMarketError)):
        return EXIT_ERROR, str(exc)
    if isinstance(exc, sqlite3.Error):
        return EXIT_ERROR, f"database error: {exc}"
    if isinstance(exc, _SinkUnusable):
        return EXIT_ERROR, str(exc)
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return EXIT_ERROR, f"{exc.filename}: {exc.strerror}"
    return EXIT_ERROR, f"{type(exc).__name__}: {exc}"


async def _interruptible(coro: Awaitable[int]) -> int:
    """Run `coro`, cancelling it on SIGINT/SIGTERM so cleanup (commits) runs first."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def cancel(sig: int) -> None:
        received.append(sig)
        task.cancel()

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, cancel, sig)
            handled.append(sig)
    try:
        return await coro
    except asyncio.CancelledError:
        if received:
            raise _Interrupted(received[0]) from None
        raise
    finally:
        # Removing puts the default handlers back: ours replace them before
        # a signal can reach them.
        with _signals_held():
            for sig in handled:
                loop.remove_signal_handler(sig)
            if handled:
                install_signal_handlers()


def _configure_logging(args: argparse.Namespace) -> None:
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
        return super().format(record).translate(_LOG_ESCAPES)


def _one_line(text: str, secrets: Iterable[str | None]) -> str:
    """`text` on one line, with any secret blanked out."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split()) or "-"


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: ``sys.argv[1:]``); return the exit code."""
    command, secrets = "-", [os.environ.get(ENV_API_KEY), os.environ.get(ENV_OAUTH_TOKEN)]
    try:
        install_signal_handlers()
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                # Text from the API or argv that is not valid Unicode prints escaped.
                stream.reconfigure(errors="backslashreplace")
        args = build_parser().parse_args(argv)
        command = args.command
        secrets += [getattr(args, "api_key", None), getattr(args, "oauth_token", None)]
        _configure_logging(args)
        return asyncio.run(_interruptible(_COMMANDS[command](args)))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:  # _Interrupted too
        if command == "fake-server":
            return EXIT_OK
        print("yamarket-chats: interrupted", file=sys.stderr, flush=True)
        return 128 + exc.signum if isinstance(exc, _Interrupted) else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and let nothing flush into the pipe.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if os.environ.get(ENV_DEBUG):
            raise
        code, reason = _failure(exc)
        reason = _one_line(reason, secrets).translate(_LOG_ESCAPES)
        print(f"yamarket-chats {command}: error: {reason}", file=sys.stderr, flush=True)
        return code


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: ``yamarket-chats``."""
    try:
        try:
            install_signal_handlers()  # first: a Ctrl-C from here on exits cleanly
            code = run(argv)
        finally:
            _ignore_signals()
    except _Interrupted as exc:  # before run() took over, or after it returned
        print("yamarket-chats: interrupted", file=sys.stderr, flush=True)
        code = 128 + exc.signum
    sys.exit(code)


if __name__ == "__main__":
    main()
