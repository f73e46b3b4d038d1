"""Entry point of the ``yamarket-chats`` command: catch signals before any heavy import.

Importing the CLI loads aiohttp, msgspec and the client (a few tenths of a
second). A Ctrl-C or SIGTERM in that time would end the process by Python's
default handlers: a KeyboardInterrupt traceback, or death by the signal. This
module imports nothing heavy (the package's names load on first use), so its
handlers are in place at once; they exit at once with 128 + the signal number
(130, 143), as nothing has been opened yet. ``yamarket_chats.cli.main`` then
installs its own handlers, which cancel the running command cleanly.
"""

from __future__ import annotations

import os
import signal


def _exit(signum: int, frame: object) -> None:
    os.write(2, b"yamarket-chats: interrupted\n")
    os._exit(128 + signum)


def main() -> None:
    """Install the early signal handlers, then run the CLI."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit)
    from .cli import main as cli_main

    cli_main()
