"""The commands, one module per family, imported when their command runs.

Each command is an ``async def (args) -> exit code``. Only the module of the
command being run is imported: ``--help``, a usage error or ``chats`` never
load the sinks, the fake or the fleet.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable
from typing import cast

__all__ = ["command"]

Command = Callable[[argparse.Namespace], Awaitable[int]]

# Each command's module (in this package) and function.
_WHERE = {
    "sync": ("sync", "sync_command"),
    "chats": ("read", "chats_command"),
    "history": ("read", "history_command"),
    "send": ("send", "send_command"),
    "due": ("desk", "due_command"),
    "mcp": ("mcp", "mcp_command"),
    "fake-server": ("fakes", "fake_server_command"),
    "demo": ("fakes", "demo_command"),
}


def command(name: str) -> Command:
    """The function that runs command `name`."""
    module, function = _WHERE[name]
    return cast(Command, getattr(importlib.import_module(f".{module}", __name__), function))
