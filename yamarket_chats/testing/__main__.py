"""``python -m yamarket_chats.testing``: run the fake Market API standalone."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from . import FakeMarketConfig, run_fake_server, self_signed_tls
from ._options import add_arguments, config_from_args
from ._tls import DEFAULT_HOSTS

__all__ = ["add_arguments", "config_from_args", "main", "serve_forever"]


async def serve_forever(
    config: FakeMarketConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve the fake until cancelled, after printing how to reach it."""
    async with run_fake_server(config, host=host, port=port, ssl_context=ssl_context) as server:
        print(f"Fake Yandex Market chats API at {server.url}", flush=True)
        print(f"Businesses: {', '.join(map(str, server.market.businesses))}", flush=True)
        print(f"Api-Key: {server.api_key}", flush=True)
        print(f"OAuth token: {server.oauth_token}", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m yamarket_chats.testing``."""
    parser = argparse.ArgumentParser(prog="python -m yamarket_chats.testing", description=__doc__)
    add_arguments(parser)
    parser.add_argument(
        "--tls-ca",
        type=Path,
        metavar="FILE",
        help="serve HTTPS with a throwaway certificate; write its CA (PEM) to FILE for clients",
    )
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    context = None
    if args.tls_ca is not None:
        try:
            tls = self_signed_tls(tuple(dict.fromkeys((args.host, *DEFAULT_HOSTS))))
        except RuntimeError as exc:  # trustme is missing: say what to install
            parser.error(f"--tls-ca: {exc}")
        args.tls_ca.write_text(tls.ca_pem, encoding="ascii")
        context = tls.server_context
    try:
        asyncio.run(serve_forever(config, args.host, args.port, ssl_context=context))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
