"""The fake's command-line options, apart from the fake so that parsing them is cheap.

``python -m yamarket_chats.testing`` and ``yamarket-chats fake-server`` take
the same options; ``yamarket-chats`` builds its whole parser at start, so these
must not import the fake (aiohttp's server side) to be added.
"""

from __future__ import annotations

import argparse

from ._config import FakeMarketConfig

__all__ = ["add_arguments", "config_from_args"]


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
