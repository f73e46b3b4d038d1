"""The client a command talks to the API with, from its options and environment.

An option beats its environment variable; the key is never echoed: a
refusal by the client's own checks names the option (or the variable) the
bad value came from, not the value. Without ``--base-url`` the client is
given none: it reads ``$YANDEX_MARKET_BASE_URL``, else uses production (the
library's rule, in one place). Unless every warning is shown (-v), the client
gets a `FirstRetryNotice` hook, so a retrying call is never silent.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .. import _environ
from ..errors import InvalidRequestError
from .failures import UsageError
from .logs import warnings_shown

if TYPE_CHECKING:
    from ..client import ChatsClient
    from ..hooks import ClientHooks
    from ..limits import Limiter

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_DEBUG",
    "ENV_OAUTH_TOKEN",
    "make_client",
]

# The library's variables: the client reads them when given None.
ENV_API_KEY = _environ.API_KEY
ENV_OAUTH_TOKEN = _environ.OAUTH_TOKEN
ENV_BASE_URL = _environ.BASE_URL
ENV_DEBUG = "YANDEX_MARKET_DEBUG"
DEFAULT_BASE_URL = _environ.PRODUCTION_URL  #: for --help: the client's default

# The client's parameters that come from an option (or the key's variable).
_CLIENT_OPTIONS = frozenset(
    {"api_key", "oauth_token", "base_url", "timeout", "max_retries", "max_wait"}
)


def make_client(
    args: argparse.Namespace,
    limiter: Limiter | None = None,
    hooks: ClientHooks | None = None,
) -> ChatsClient:
    """A client from the options; an option beats its environment variable."""
    from ..client import ChatsClient
    from .retries import FirstRetryNotice

    api_key, token, key_source = _credentials(args)
    all_hooks = [] if hooks is None else [hooks]
    if not warnings_shown(args):
        all_hooks.append(FirstRetryNotice())
    # A sync is a bulk job: it waits out a spent quota; other commands keep the client's bound.
    max_wait: dict[str, Any] = {"max_wait": None} if args.command == "sync" else {}
    if args.max_wait is not None:
        max_wait = {"max_wait": args.max_wait}
    try:
        return ChatsClient(
            api_key,
            oauth_token=token,
            base_url=args.base_url,
            timeout=args.timeout,
            max_retries=args.max_retries,
            limiter=limiter,
            hooks=all_hooks or None,
            **max_wait,
        )
    except InvalidRequestError as exc:
        # The client checks its arguments (never echoing a key, nor a URL's
        # password); the message names its parameter: say the option instead.
        # A variable's value refused is named by the variable: said as `$NAME`.
        field, _, rest = str(exc).partition(" ")
        sources = {"api_key", "oauth_token", ENV_API_KEY, ENV_OAUTH_TOKEN}
        option = key_source if field in sources else "--" + field.replace("_", "-")
        known = field in _CLIENT_OPTIONS or field in sources
        raise UsageError(f"{option} {rest}" if known else str(exc)) from None


def _credentials(args: argparse.Namespace) -> tuple[str | None, str | None, str]:
    """(api key, OAuth token, where the secret comes from, as the user names it).

    An option given is passed on; with neither, both stay None and the client
    reads the environment (`yamarket_chats._environ`: the rule lives there).
    """
    if args.api_key and args.oauth_token:
        raise UsageError("pass only one of --api-key and --oauth-token")
    api_key, token = args.api_key or None, args.oauth_token or None
    where = _environ.source(api_key, token)
    if where is None:
        raise UsageError(f"no credentials: pass --api-key or set {ENV_API_KEY}")
    return api_key, token, _SOURCE_NAMES.get(where, f"${where}")


_SOURCE_NAMES = {"api_key": "--api-key", "oauth_token": "--oauth-token"}
