"""``fake-server`` and ``demo``: the built-in fake Market API, served or synced from."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ...client import ChatsClient
from ...limits import RateLimit
from ...sinks import SQLiteSink
from ..failures import EXIT_OK, UsageError
from ..output import log_text
from ..progress import make_display
from ..sink import open_file_sink
from ..waits import WaitClock
from .sync import run_sync

if TYPE_CHECKING:
    from ...testing import FakeMarket, FakeServer

__all__ = ["demo_command", "fake_server_command"]


async def fake_server_command(args: argparse.Namespace) -> int:
    """Serve the fake until interrupted (SIGINT, SIGTERM: 130, 143, as any command)."""
    from ...testing.__main__ import serve_forever
    from ...testing._options import config_from_args, tls_from_args

    try:
        config = config_from_args(args)
        context = tls_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    await serve_forever(config, args.host, args.port, ssl_context=context)
    return EXIT_OK


# The demo's fake scales the hourly quotas down to one-second windows, and the
# client's buckets sit just under them, so limits visibly pace the sync.
_DEMO_WINDOW = 1.0
_DEMO_QUOTA = 15
_DEMO_LIMIT = RateLimit(12, _DEMO_WINDOW, burst=4)
_BUSINESSES = (1001, 2002)


async def demo_command(args: argparse.Namespace) -> int:
    """Sync a fake into a fresh SQLite file, post a few messages, sync again."""
    from ...testing import FakeMarketConfig, run_fake_server

    config = FakeMarketConfig(
        businesses=_BUSINESSES,
        chats_per_business=args.chats,
        messages_per_chat=args.messages,
        quota_window=_DEMO_WINDOW,
        quotas={"get_chats": _DEMO_QUOTA, "get_chat_history": _DEMO_QUOTA},
    )
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
            total = sum(c.message_count for b in _BUSINESSES for c in fake.market.chats(b))
            print(
                f"demo: fake API at {fake.url}: {len(_BUSINESSES)} businesses x {args.chats} chats,"
                f" {total} messages; limits {_DEMO_LIMIT.amount} requests/s per business",
                file=out,
                flush=True,
            )
            await _two_syncs(args, fake, db_path)
        chats, messages = _count_rows(db_path)
        where = log_text(os.fspath(db_path))  # the user's --db, on one line
        print(f"demo: {where} ({kept}): {chats} chats, {messages} messages", file=out)
    return EXIT_OK


async def _two_syncs(args: argparse.Namespace, fake: FakeServer, db_path: Path) -> None:
    """A full sync of the fake, a few new messages, an incremental sync."""
    out = sys.stdout
    limits: dict[str, RateLimit | None] = {
        "get_chats": _DEMO_LIMIT,
        "get_chat_history": _DEMO_LIMIT,
    }
    clock = WaitClock()
    async with ChatsClient(
        api_key=fake.api_key, base_url=fake.url, limits=limits, hooks=clock
    ) as client:
        sink = await open_file_sink(lambda: SQLiteSink(db_path), db_path, quiet=args.quiet)
        async with sink:
            display = make_display(sys.stderr, quiet=args.quiet, clock=clock)
            await run_sync("full sync", client, _BUSINESSES, sink, display, out)
            changed = _add_demo_messages(fake.market, _BUSINESSES)
            print(
                f"demo: {sum(changed.values())} new messages posted in {len(changed)} chats",
                file=out,
                flush=True,
            )
            await run_sync("incremental sync", client, _BUSINESSES, sink, display, out)


def _add_demo_messages(market: FakeMarket, businesses: Sequence[int]) -> dict[int, int]:
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
