"""DSNs in text a user may see (reprs, error messages): never the password.

A DSN carries its password in the URL's userinfo or in a ``password=``
parameter; both are masked, and so is any copy of it that a driver error
quotes back.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import unquote, urlsplit, urlunsplit

_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('[^']*'|[^\s&]*)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """``dsn`` with its password (in the userinfo or a ``password=`` parameter) as ``***``."""
    text = _PASSWORD_PARAM.sub(r"\1***", dsn)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparsable DSN>"
    if parts.password is None:
        return text
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def where(dsn: str | None) -> str:
    """host:port/database of a DSN (``None``: a pool passed in), for error messages."""
    if not dsn:
        return "the pool's database"
    try:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return "<unparsable DSN>"


def scrub(dsn: str | None, text: str) -> str:
    """``text`` with every form of ``dsn``'s password as ``***``."""
    if dsn:
        found = [m.group(2).strip("'") for m in _PASSWORD_PARAM.finditer(dsn)]
        with contextlib.suppress(ValueError):
            password = urlsplit(dsn).password or ""
            found += [password, unquote(password)]
        for password in filter(None, found):
            text = text.replace(password, "***")
    return text
