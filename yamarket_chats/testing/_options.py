"""The fake's command-line options, apart from the fake so that parsing them is cheap.

``python -m yamarket_chats.testing`` and ``yamarket-chats fake-server`` take
the same options, defined once here; ``yamarket-chats`` builds its whole
parser at start, so these must not import the fake (aiohttp's server side) to
be added. An id typed on either command line is read by the package's one
rule for typed ids, `yamarket_chats._ids.parse_id`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .._ids import parse_id
from ._config import FakeMarketConfig

if TYPE_CHECKING:
    import ssl

__all__ = ["add_arguments", "config_from_args", "tls_from_args"]


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
    parser.add_argument(
        "--tls-ca",
        type=Path,
        metavar="FILE",
        help="serve HTTPS with a throwaway certificate; write its CA (PEM) to FILE for clients"
        " (needs trustme)",
    )


def config_from_args(args: argparse.Namespace) -> FakeMarketConfig:
    """The configuration the options of `add_arguments` describe (ValueError if bad)."""
    try:
        businesses = tuple(parse_id(b) for b in args.businesses.split(","))
    except ValueError as exc:
        raise ValueError(f"--businesses takes comma-separated ids: each {exc}") from None
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


def tls_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """With ``--tls-ca FILE``: a throwaway certificate's server context, its CA written
    to FILE; else None. ValueError (naming the option) if trustme is missing or FILE
    cannot be written."""
    if args.tls_ca is None:
        return None
    from ._tls import DEFAULT_HOSTS, self_signed_tls

    try:
        tls = self_signed_tls(tuple(dict.fromkeys((args.host, *DEFAULT_HOSTS))))
    except RuntimeError as exc:  # trustme is missing: say what to install
        raise ValueError(f"--tls-ca: {exc}") from None
    try:
        args.tls_ca.write_text(tls.ca_pem, encoding="ascii")
    except OSError as exc:
        raise ValueError(f"--tls-ca: cannot write {args.tls_ca}: {exc.strerror}") from None
    return tls.server_context
