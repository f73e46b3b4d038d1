"""``send``: a message or a file to a chat."""

from __future__ import annotations

import argparse

from ..connect import make_client
from ..failures import EXIT_OK
from ..output import log_text
from .common import check_utf8

__all__ = ["send_command"]


async def send_command(args: argparse.Namespace) -> int:
    """Send ``--message`` or ``--file`` (checked as UTF-8 before any request)."""
    if args.message is not None:
        check_utf8(args.message, "--message")
    if args.file is not None:
        check_utf8(args.file.name, "--file's name")
    async with make_client(args) as client:
        if args.file is not None:
            await client.send_file_to_chat(args.business_id, args.chat_id, args.file)
            print(f"sent file {log_text(args.file.name)} to chat {args.chat_id}")
        else:
            await client.send_message_to_chat(args.business_id, args.chat_id, args.message)
            print(f"sent message to chat {args.chat_id}")
    return EXIT_OK
