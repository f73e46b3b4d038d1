"""The environment variables read when an argument is left out.

One family, ``YANDEX_MARKET_*``, for the library, the CLI and every snippet of
the docs: a key exported once serves all three. An empty variable counts as
unset (``export YANDEX_MARKET_API_KEY=`` is how a shell clears one). A value
read from the environment is checked as the argument would be, and a refusal
names the variable, never its value. Only the standard library loads with this
module (the checks load when used), so the CLI's parser takes its names from here.
"""

from __future__ import annotations

import os
from typing import Final, Literal

__all__ = [
    "API_KEY",
    "BASE_URL",
    "OAUTH_TOKEN",
    "PRODUCTION_URL",
    "base_url",
    "credentials",
    "source",
]

API_KEY: Final = "YANDEX_MARKET_API_KEY"
OAUTH_TOKEN: Final = "YANDEX_MARKET_OAUTH_TOKEN"
BASE_URL: Final = "YANDEX_MARKET_BASE_URL"
PRODUCTION_URL: Final = "https://api.partner.market.yandex.ru"

AuthKind = Literal["api_key", "oauth_token"]
#: The variables read for a secret, in order, and the kind of secret each holds.
_KINDS: Final[dict[str, AuthKind]] = {API_KEY: "api_key", OAUTH_TOKEN: "oauth_token"}


def source(api_key: object, oauth_token: object) -> str | None:
    """Where the secret comes from: ``"api_key"``, ``"oauth_token"``, the name of the
    variable that holds it, or ``None`` when there is none anywhere."""
    if api_key is not None:
        return "api_key"
    if oauth_token is not None:
        return "oauth_token"
    return next((variable for variable in _KINDS if os.environ.get(variable)), None)


def credentials(api_key: object, oauth_token: object) -> tuple[AuthKind, str]:
    """The secret to send and its kind: the argument given, else the environment's.

    With neither argument, ``YANDEX_MARKET_API_KEY`` is read, then
    ``YANDEX_MARKET_OAUTH_TOKEN``.
    """
    from . import _validate
    from .errors import InvalidRequestError

    where = source(api_key, oauth_token)
    if where in ("api_key", "oauth_token"):
        secret = _validate.credentials(api_key, oauth_token)
        return ("api_key" if api_key is not None else "oauth_token"), secret
    if where is not None:  # a variable's name
        return _KINDS[where], _validate.secret(where, os.environ[where])
    raise InvalidRequestError(
        f"pass api_key (or oauth_token), or set {API_KEY} (or {OAUTH_TOKEN}) in the environment"
    )


def base_url(value: str | None) -> str:
    """The API's address: `value`, else ``YANDEX_MARKET_BASE_URL``, else production.

    Returned as given (the client normalizes it); one read from the
    environment is checked here, so that a refusal names the variable.
    """
    if value is not None:
        return value
    variable = os.environ.get(BASE_URL)
    if not variable:
        return PRODUCTION_URL
    from . import _validate
    from .errors import InvalidRequestError

    try:
        _validate.base_url(variable)
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"{BASE_URL}: {exc}") from None
    return variable
