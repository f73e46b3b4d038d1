"""``python -m yamarket_chats.testing``: run the fake Market API standalone."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from . import FakeMarketConfig, run_fake_server, self_signed_tls
from ._tls import DEFAULT_HOSTS


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The fake's options, shared with ``yamarket-chats fake-server``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--businesses", default="1001", help="comma-separated business ids")
    parser.add_argument("--chats", type=int, default=10, help="chats per business")
    parser.add_argument("--messages", type=int, default=50, help="messages per chat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-limits", action="store_true", help="no quotas, no parallel cap")
    parser.add_argument("--quota-window", type=float, default=3600.0, help="seconds")
    parser.add_argument("--keep-alive", action="store_true", help="keep connections open")
    parser.add_argument(
        "--keep-alive-timeout",
        type=float,
        metavar="SECONDS",
        help="with --keep-alive: close a connection idle this long",
    )
    parser.add_argument(
        "--max-requests-per-connection",
        type=int,
        metavar="N",
        help="with --keep-alive: answer N requests on a connection, then drop the next one on it",
    )


def config_from_args(args: argparse.Namespace) -> FakeMarketConfig:
    """The configuration the options of `add_arguments` describe (ValueError if bad)."""
    try:
        businesses = tuple(int(b) for b in args.businesses.split(","))
    except ValueError:
        raise ValueError("--businesses takes comma-separated integers") from None
    return FakeMarketConfig(
        businesses=businesses,
        chats_per_business=args.chats,
        messages_per_chat=args.messages,
        seed=args.seed,
        limits_enabled=not args.no_limits,
        quota_window=args.quota_window,
        keep_alive=args.keep_alive,
        keep_alive_timeout=args.keep_alive_timeout,
        max_requests_per_connection=args.max_requests_per_connection,
    )


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
