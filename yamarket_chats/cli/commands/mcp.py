"""``mcp``: the desk's MCP server (`yamarket_chats.desk.mcp`) on stdio or streamable HTTP.

On stdio, stdout is the protocol's: everything this command says goes to
stderr. Over HTTP the endpoint is ``http://HOST:PORT/mcp``; the SDK guards a
loopback address against DNS rebinding, and anything else gets a warning,
as the endpoint has no authentication of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

from ..connect import make_client
from ..failures import EXIT_OK, UsageError
from ..logs import say
from ..output import log_text
from .desk import desk_source

if TYPE_CHECKING:
    from mcp.server import MCPServer

__all__ = ["mcp_command"]

_GRACE_SECONDS = 2  # for open HTTP streams at shutdown


async def mcp_command(args: argparse.Namespace) -> int:
    """Serve the MCP tools until stdin closes (stdio) or a signal (HTTP)."""
    if importlib.util.find_spec("mcp") is None:
        raise UsageError("yamarket-chats mcp needs the MCP SDK: pip install 'yamarket-chats[mcp]'")
    from ...desk.mcp import build_server

    if args.http is not None and args.allow_send and not _loopback(args.http[0]):
        raise UsageError(
            f"--allow-send with --http {args.http[0]} (not loopback) is refused: the human"
            " confirmation goes back to whoever calls the tool, and the endpoint has no"
            " authentication. Listen on 127.0.0.1 behind a proxy that authenticates"
        )
    listening = None if args.http is None else _listen(*args.http)
    with listening or contextlib.nullcontext():
        async with desk_source(args) as source, make_client(args) as client:
            server = build_server(source, client, allow_send=args.allow_send)
            if listening is None:
                await server.run_stdio_async()
            else:
                await _serve_http(server, listening, args.http[0])
    return EXIT_OK


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else opens (a port in use: exit 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"--http {host}:{port}: cannot listen there: {exc.strerror}") from None
    sock.listen(128)
    return sock


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _serve_http(server: MCPServer, sock: socket.socket, host: str) -> None:
    import uvicorn

    app = server.streamable_http_app(host=host)  # DNS-rebinding guard on loopback
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    say(f"yamarket-chats mcp: serving http://{log_text(shown)}:{port}/mcp", level=logging.WARNING)
    if not _loopback(host):
        say(
            f"yamarket-chats mcp: {log_text(host)} is not loopback and the endpoint has no"
            " authentication: whoever reaches it reads these chats (and sending is refused)",
            level=logging.WARNING,
        )
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=_GRACE_SECONDS, lifespan="on"
    )
    await uvicorn.Server(config).serve(sockets=[sock])
