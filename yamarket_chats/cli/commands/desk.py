"""``due``: the reply-due queue, read from the sink (no API request).

A table on a terminal, TSV when piped, JSON Lines with ``--json``: the same
rows as `yamarket_chats.desk.waiting_chats` gives, oldest wait first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from ...desk import WaitingChat, waiting_chats
from ...errors import InvalidRequestError
from ..failures import EXIT_OK, UsageError
from ..output import json_lines, table
from ..parser import DEFAULT_DB

if TYPE_CHECKING:
    from ...desk import Source

__all__ = ["desk_source", "due_command", "waited_text"]

_HEADERS = ["business", "chat", "status", "waiting since", "waited", "context", "customer",
            "customer's last message"]  # fmt: skip


@contextlib.asynccontextmanager
async def desk_source(args: argparse.Namespace) -> AsyncIterator[Source]:
    """The sink named by ``--db`` / ``--postgres-url``, to read (a path is opened per read)."""
    if not args.postgres_url:
        yield args.db or Path(DEFAULT_DB)
        return
    if importlib.util.find_spec("asyncpg") is None:
        raise UsageError("--postgres-url needs asyncpg: pip install 'yamarket-chats[postgres]'")
    from ...sinks.postgres import PostgresSink

    async with PostgresSink(args.postgres_url, migrate=False) as sink:  # a reader: no DDL
        yield sink


def waited_text(waited: dt.timedelta) -> str:
    """``3d 4h``, ``2h 05m``, ``7m``: how long, to the minute."""
    minutes = max(int(waited.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _context(chat: WaitingChat) -> str:
    if chat.return_id is not None:
        return f"RETURN {chat.return_id} (order {chat.order_id})"
    return chat.context_type if chat.order_id is None else f"{chat.context_type} {chat.order_id}"


def _row(chat: WaitingChat, now: dt.datetime) -> list[object]:
    files = [f"[{name}]" for name in chat.last_message_files]
    last = " ".join(part for part in [chat.last_message, *files] if part)
    return [
        chat.business_id,
        chat.chat_id,
        chat.status,
        chat.waiting_since.isoformat(),
        waited_text(chat.waited(now)),
        _context(chat),
        chat.customer_name,
        last,
    ]


async def due_command(args: argparse.Namespace) -> int:
    """Print the chats waiting for the seller's answer, oldest first."""
    now = dt.datetime.now(dt.timezone.utc)
    async with desk_source(args) as source:
        try:
            queue = await waiting_chats(
                source, older_than=args.older_than, business_ids=args.business_ids, now=now
            )
        except InvalidRequestError as exc:  # named as the command line spells it
            raise UsageError(str(exc).replace("older_than must", "--older-than must")) from None
    if args.json:

        async def one_page() -> AsyncIterator[list[WaitingChat]]:
            yield queue

        await json_lines(one_page())
    else:
        table(_HEADERS, (_row(chat, now) for chat in queue))
        if not queue and sys.stdout.isatty():
            print("no chat is waiting for an answer")
    return EXIT_OK
