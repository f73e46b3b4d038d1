"""DSNs: the two forms libpq reads, and never their password in text a user may see.

A DSN is a URL (``postgresql://user:password@host:5432/db?sslmode=require``)
or libpq's key=value string (``host=db user=u password='a b' dbname=x``).
asyncpg reads only the URL, so a key=value DSN is turned into one
(`connect_dsn`): its keywords become the URL's query parameters, which
asyncpg reads under libpq's names.

Either form carries its password in the clear: in the URL's userinfo, in a
``password=`` parameter (any case, quoted or not, spaces around ``=``), or
in ``sslpassword=``. Every text made for people (a repr, an error message,
the CLI's stderr) goes through `scrub`, which masks every spelling of each
of those passwords that could show up (as written, unquoted, percent-encoded,
as urllib reads it), wherever it shows up, so that a driver error quoting the
DSN back cannot leak it either; `redact` and `where` are scrubbed the same
way. URLs are split as written, not by `urllib.parse.urlsplit`, which drops
tabs and newlines and would show a different text than the one to mask.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlencode

MASK = "***"
_UNPARSABLE = "<unparsable DSN>"
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
_SPACE = " \t\n\r\f\v"  # libpq's isspace()
_HOST_PORT = re.compile(r"(\[[^\]]*\]|[^:]*)(?::(.*))?", re.DOTALL)
_SCRUB_ROUNDS = 8


class Keyword(NamedTuple):
    """One ``key=value`` of a key=value DSN: the value unescaped, and where it was written."""

    key: str
    value: str
    start: int
    end: int


class Url(NamedTuple):
    """A URL DSN cut into its parts as written (``query`` without its ``?``)."""

    head: str
    netloc: str
    path: str
    query: str | None
    fragment: str

    @classmethod
    def split(cls, dsn: str) -> Url:
        """Cut ``dsn`` (a URL: `is_url`) where `urllib.parse.urlsplit` would."""
        match = _URL.match(dsn)
        assert match is not None
        rest = dsn[match.end() :]
        cut = min([rest.index(c) for c in "/?#" if c in rest], default=len(rest))
        netloc, rest = rest[:cut], rest[cut:]
        rest, _, fragment = rest.partition("#")
        path, mark, query = rest.partition("?")
        return cls(match.group(0), netloc, path, query if mark else None, fragment)

    def join(self) -> str:
        """The URL again."""
        query = "" if self.query is None else "?" + self.query
        return f"{self.head}{self.netloc}{self.path}{query}" + (
            f"#{self.fragment}" if self.fragment else ""
        )

    def fields(self) -> Iterator[tuple[str, str, str]]:
        """Each query field as written, its key (decoded, lowercased) and its raw value."""
        for field in (self.query or "").split("&"):
            key, _, value = field.partition("=")
            yield field, unquote_plus(key).lower(), value


def is_url(dsn: str) -> bool:
    """Whether ``dsn`` is a URL (``scheme://...``) rather than key=value pairs."""
    return _URL.match(dsn) is not None


def keywords(dsn: str) -> list[Keyword]:
    """The pairs of a key=value DSN, as libpq reads them (keys lowercased).

    A value may be quoted (``'a b'``); a backslash escapes the next character,
    quoted or not. Raises `ValueError` without quoting the DSN.
    """
    found: list[Keyword] = []
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i] in _SPACE:
            i += 1
        if i == n:
            return found
        start = i
        while i < n and dsn[i] not in _SPACE and dsn[i] != "=":
            i += 1
        key = dsn[start:i].lower()
        while i < n and dsn[i] in _SPACE:
            i += 1
        if not key or i == n or dsn[i] != "=":
            raise ValueError("neither a postgresql:// URL nor key=value pairs")
        i += 1
        while i < n and dsn[i] in _SPACE:
            i += 1
        start = i
        value, i = _value(dsn, i)
        found.append(Keyword(key, value, start, i))


def _value(dsn: str, i: int) -> tuple[str, int]:
    """The value that starts at ``dsn[i]``, unescaped, and the index after it."""
    quoted = i < len(dsn) and dsn[i] == "'"
    i += quoted
    chars: list[str] = []
    while i < len(dsn):
        char = dsn[i]
        if char == "\\" and i + 1 < len(dsn):
            chars.append(dsn[i + 1])
            i += 2
            continue
        if (char == "'") if quoted else (char in _SPACE):
            return "".join(chars), i + 1 if quoted else i
        chars.append(char)
        i += 1
    if quoted:
        raise ValueError("a quoted value in the DSN has no closing quote")
    return "".join(chars), i


# libpq's keywords for the client side of a connection, which asyncpg does not
# take: passed on, it would send each to the server as a setting, which the
# server refuses ("unrecognized configuration parameter") or, worse, obeys.
_CLIENT_ONLY = frozenset(
    [
        "hostaddr",
        "connect_timeout",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "gssdelegation",
        "sslcompression",
        "sslsni",
        "sslcertmode",
        "requirepeer",
        "require_auth",
        "channel_binding",
        "requiressl",
        "load_balance_hosts",
        "options",
    ]
)


def connect_dsn(dsn: str) -> str:
    """``dsn`` as asyncpg reads it: a URL as it is; key=value pairs as a URL's query.

    Raises ``ValueError`` naming a libpq keyword asyncpg cannot honour.
    """
    if is_url(dsn):
        return dsn
    pairs = [(k.key, k.value) for k in keywords(dsn) if k.value]
    unsupported = sorted({key for key, _ in pairs} & _CLIENT_ONLY)
    if unsupported:
        raise ValueError(
            f"the DSN keyword {', '.join(unsupported)} is libpq's and asyncpg cannot honour"
            " it: leave it out (its keywords: host, port, dbname, user, password, passfile,"
            " sslmode, sslcert, sslkey, sslrootcert, target_session_attrs, and server"
            " settings such as application_name)"
        )
    return "postgresql://?" + urlencode(pairs)


def _is_secret(key: str) -> bool:
    return key.endswith("password")  # password, sslpassword


def _passwords(dsn: str) -> set[str]:
    """Every spelling of every password ``dsn`` holds."""
    found: set[str] = set()
    if is_url(dsn):
        url = Url.split(dsn)
        userinfo, at, _ = url.netloc.rpartition("@")
        if at:  # urllib ends the userinfo at the last "@", asyncpg at the first
            found |= {userinfo.partition(":")[2], userinfo.partition("@")[0].partition(":")[2]}
        found.update(value for _, key, value in url.fields() if _is_secret(key))
    else:
        try:
            pairs = keywords(dsn)
        except ValueError:  # never used to connect: a guess, to be safe
            match = re.search(r"password\s*=\s*'?(.*)", dsn, re.IGNORECASE | re.DOTALL)
            pairs = [Keyword("password", match.group(1), 0, 0)] if match else []
        for pair in pairs:
            if _is_secret(pair.key):
                found |= {pair.value, dsn[pair.start : pair.end]}
    for written in list(found):
        for plain in {written, unquote(written), unquote_plus(written)}:
            seen = re.sub(r"[\t\r\n]", "", plain)  # as urllib (and so asyncpg) reads it
            encoded = {quote(plain), quote(plain, safe=""), quote_plus(plain)}
            found |= {*_quoted(plain), *_quoted(seen), *encoded}
    found.discard("")
    return found


def _quoted(text: str) -> tuple[str, str, str]:
    """``text`` itself, and as the inside of a Python repr, in either quotes."""
    return text, repr(text)[1:-1], repr(text + "\"'")[1:-4]


def scrub(dsn: str | None, text: str) -> str:
    """``text`` with every spelling of each of ``dsn``'s passwords as ``***``."""
    secrets = sorted(_passwords(dsn), key=len, reverse=True) if dsn else []
    for _ in range(_SCRUB_ROUNDS):
        present = [s for s in secrets if s in text]
        if not present:
            return text
        for secret in present:
            text = text.replace(secret, MASK if secret.strip("*") else "[hidden]")
    # Two passwords whose masks keep spelling each other anew: say nothing of it.
    hidden = ("[text hidden: it spelt a password]", MASK, "")
    return next(t for t in hidden if not any(s in t for s in secrets))


def redact(dsn: str) -> str:
    """``dsn`` for display: its passwords (userinfo, ``password=``) as ``***``."""
    if is_url(dsn):
        url = Url.split(dsn)
        userinfo, at, hostspec = url.netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        fields = [
            field.partition("=")[0] + "=" + MASK if _is_secret(key) else field
            for field, key, _ in url.fields()
        ]
        query = None if url.query is None else "&".join(fields)
        masked = url._replace(netloc=userinfo + at + hostspec, query=query).join()
    else:
        try:
            pairs = keywords(dsn)
        except ValueError:
            return _UNPARSABLE
        masked = dsn
        for pair in reversed(pairs):
            if _is_secret(pair.key):
                masked = masked[: pair.start] + MASK + masked[pair.end :]
    return scrub(dsn, masked)


def where(dsn: str | None) -> str:
    """host:port/database of a DSN (``None``: a pool passed in), for error messages."""
    if not dsn:
        return "the pool's database"
    host = port = database = ""
    if is_url(dsn):
        url = Url.split(dsn)
        params = {key: unquote_plus(value) for _, key, value in url.fields()}
        hostspec = url.netloc.rpartition("@")[2]
        if "," in hostspec:  # several hosts: as written, ports and all
            host, port = hostspec, "-"
        else:
            match = _HOST_PORT.fullmatch(hostspec)
            host, port = (match.group(1), match.group(2) or "") if match else (hostspec, "")
        database = unquote(url.path.lstrip("/"))
    else:
        try:
            params = {pair.key: pair.value for pair in keywords(dsn)}
        except ValueError:
            return _UNPARSABLE
    host = host or params.get("host") or "localhost"
    port = port or params.get("port") or "5432"
    database = database or params.get("dbname") or params.get("database") or ""
    address = host if port == "-" else f"{host}:{port}"
    return scrub(dsn, f"{address}/{database}" if database else address)
