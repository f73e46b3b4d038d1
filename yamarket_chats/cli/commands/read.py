"""``chats`` and ``history``: a business's chats, a chat's messages, as a table or JSON Lines."""

from __future__ import annotations

import argparse

from ..connect import make_client
from ..failures import EXIT_OK
from ..output import chat_row, json_lines, message_row, table
from .common import filters

__all__ = ["chats_command", "history_command"]


async def chats_command(args: argparse.Namespace) -> int:
    """Print a business's chats."""
    async with make_client(args) as client:
        chats = client.iter_chats(args.business_id, **filters(args))
        if args.json:
            await json_lines(page.chats async for page in chats.pages())
        else:
            rows = [chat_row(c) async for c in chats]
            table(["chat", "status", "type", "context", "order", "customer", "updated"], rows)
    return EXIT_OK


async def history_command(args: argparse.Namespace) -> int:
    """Print a chat's messages, from ``--from`` on."""
    async with make_client(args) as client:
        messages = client.iter_chat_history(
            args.business_id, args.chat_id, message_id_from=args.message_id_from
        )
        if args.json:
            await json_lines(page.messages async for page in messages.pages())
        else:
            rows = [message_row(m) async for m in messages]
            table(["message", "created", "sender", "text"], rows)
    return EXIT_OK
