"""``python -m yamarket_chats.testing``: run the fake Market API standalone.

It serves until SIGINT (Ctrl-C) or SIGTERM, then closes the server and exits
with 128 + the signal's number (130, 143), as ``yamarket-chats fake-server``
(the same options, from `._options`) and every other command do.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from collections.abc import Sequence

from . import FakeMarketConfig, run_fake_server
from ._options import add_arguments, config_from_args, tls_from_args

__all__ = ["add_arguments", "build_parser", "config_from_args", "main", "serve_forever"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def serve_forever(
    config: FakeMarketConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve the fake until cancelled, after printing how to reach it.

    The first line (``Fake Yandex Market chats API at URL``) says it is ready.
    """
    async with run_fake_server(config, host=host, port=port, ssl_context=ssl_context) as server:
        print(f"Fake Yandex Market chats API at {server.url}", flush=True)
        print(f"Businesses: {', '.join(map(str, server.market.businesses))}", flush=True)
        print(f"Api-Key: {server.api_key}", flush=True)
        print(f"OAuth token: {server.oauth_token}", flush=True)
        await asyncio.Event().wait()


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m yamarket_chats.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m yamarket_chats.testing",
        description="Run the fake Yandex Market chats API until Ctrl-C or SIGTERM.",
    )
    add_arguments(parser)
    return parser


async def _serve_until_signal(
    config: FakeMarketConfig, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> int:
    """Serve until SIGINT or SIGTERM; the exit code is 128 + that signal's number."""
    loop = asyncio.get_running_loop()
    serving = asyncio.ensure_future(serve_forever(config, host, port, ssl_context=ssl_context))
    received: list[int] = []

    def stop(sig: int) -> None:
        received.append(sig)
        serving.cancel()

    for sig in _SIGNALS:
        try:
            loop.add_signal_handler(sig, stop, sig)
        except NotImplementedError:  # Windows: Ctrl-C arrives as KeyboardInterrupt (main)
            break
    try:
        await serving
    except asyncio.CancelledError:
        if not received:
            raise
    return 128 + received[0]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m yamarket_chats.testing``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        context = tls_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        code = asyncio.run(_serve_until_signal(config, args.host, args.port, context))
    except KeyboardInterrupt:  # before the server's handlers were in place, or on Windows
        code = 128 + signal.SIGINT
    except OSError as exc:  # the port is taken, the host is not ours
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
