"""DSNs in every form libpq reads: masked in reprs, errors and the CLI; key=value DSNs connect.

The forms: a URL with the password in its userinfo or in ``?password=``, and
key=value pairs with the password quoted (``'a b'``, ``\\'`` inside) or not,
spaces around ``=``, keywords in any case. Whatever the form, the password
never shows in `PostgresSink`'s repr, in `PostgresSinkError`, or on the
CLI's stderr; `where` names the database of each.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pg_server import PASSWORD, USER, PostgresServer
from tests.servers import free_port
from yamarket_chats.sinks import PostgresSink
from yamarket_chats.sinks.postgres import PostgresSinkError, redact
from yamarket_chats.sinks.postgres._dsn import connect_dsn, keywords, scrub, where

ROOT = Path(__file__).resolve().parent.parent


def quoted(password: str) -> str:
    """``password`` as a quoted key=value value."""
    return "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unquoted(password: str) -> str:
    """``password`` as an unquoted key=value value: a backslash before anything special."""
    return "".join("\\" + c if c in "\\' \t\n\r\f\v" else c for c in password)


Form = Callable[[str, str, int, str], str]  # password, host, port, database -> DSN

FORMS: dict[str, Form] = {
    "url-userinfo": lambda pw, h, p, d: f"postgresql://{USER}:{quote(pw, safe='')}@{h}:{p}/{d}",
    "url-query": lambda pw, h, p, d: (
        f"postgresql://{USER}@{h}:{p}/{d}?sslmode=disable&password={quote_plus(pw)}"
    ),
    "key-value": lambda pw, h, p, d: (
        f"host={h} port={p} user={USER} password={unquoted(pw)} dbname={d}"
    ),
    "key-value-quoted": lambda pw, h, p, d: (
        f"host={h} port={p} user={USER} password={quoted(pw)} dbname={d}"
    ),
    "key-value-spaced-upper": lambda pw, h, p, d: (
        f"HOST = {h}  Port= {p} user ={USER} PASSWORD = {quoted(pw)}\tDBName={d}"
    ),
}
#: Masked too, though asyncpg would not read it as the password.
MASKED_ONLY: dict[str, Form] = {
    "url-query-upper": lambda pw, h, p, d: f"postgresql://{USER}@{h}:{p}/{d}?PassWord={quote(pw)}",
}
NASTY = "s3cr@t p:a/s?s#w&o=r'd \\ \"%2F+ ünï"


def read_back(dsn: str) -> str | None:
    """The password asyncpg is given for ``dsn`` (after `connect_dsn`)."""
    url = connect_dsn(dsn)
    if urlsplit(url).password is not None:
        return unquote(url.partition("//")[2].rpartition("@")[0].partition(":")[2])
    return parse_qs(urlsplit(url).query, strict_parsing=True).get("password", [None])[0]


def outputs(dsn: str, password: str) -> list[str]:
    """Every text the sink makes of ``dsn`` for people, with a driver error quoting it all."""
    sink = PostgresSink(dsn)
    quoting = ValueError(f"invalid DSN {dsn!r}: {password} {quote(password)} {password!r}")
    return [
        repr(sink),
        redact(dsn),
        where(dsn),
        str(sink._error(quoting, "cannot connect")),
        scrub(dsn, f"{password}|{quote(password, safe='')}|{quote_plus(password)}"),
    ]


@pytest.mark.parametrize("form", [*FORMS, *MASKED_ONLY])
def test_each_form_is_masked_and_names_its_database(form: str) -> None:
    dsn = {**FORMS, **MASKED_ONLY}[form](NASTY, "db.example", 6432, "market")
    for text in outputs(dsn, NASTY):
        assert NASTY not in text and "s3cr" not in text and "ünï" not in text, text
    assert "***" in redact(dsn)
    assert where(dsn) == "db.example:6432/market"
    if form in FORMS:
        assert read_back(dsn) == NASTY  # the password asyncpg gets, unchanged


@pytest.mark.parametrize(
    ("dsn", "pairs"),
    [
        ("host=db  dbname = x", [("host", "db"), ("dbname", "x")]),
        ("password='a b' user=u", [("password", "a b"), ("user", "u")]),
        (r"password='it\'s \\ ok'", [("password", "it's \\ ok")]),
        (r"password=a\ b\'c", [("password", "a b'c")]),
        ("password='' Host=db", [("password", ""), ("host", "db")]),
        ("  sslmode=require\n", [("sslmode", "require")]),
    ],
)
def test_key_value_pairs_are_read_as_libpq_reads_them(
    dsn: str, pairs: list[tuple[str, str]]
) -> None:
    assert [(k.key, k.value) for k in keywords(dsn)] == pairs


@pytest.mark.parametrize("dsn", ["host=db password='unclosed s3cr", "s3cr", "=s3cr", "host"])
def test_a_malformed_key_value_dsn_is_refused_without_quoting_it(dsn: str) -> None:
    with pytest.raises(ValueError) as refused:
        keywords(dsn)
    assert "s3cr" not in str(refused.value)
    assert redact(dsn) == where(dsn) == "<unparsable DSN>"
    assert "s3cr" not in repr(PostgresSink(dsn))


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:pw@h1:5432,h2:5433/db", "h1:5432,h2:5433/db"),
        ("postgresql://u:pw@[::1]:6000/db", "[::1]:6000/db"),
        ("postgresql:///db?host=/run/postgresql&port=6000", "/run/postgresql:6000/db"),
        ("postgres://db.example", "db.example:5432"),
        ("user=u password=pw", "localhost:5432"),
        ("host=/tmp database=x", "/tmp:5432/x"),
    ],
)
def test_where_names_host_port_and_database(dsn: str, shown: str) -> None:
    assert where(dsn) == shown


@settings(max_examples=300, deadline=None)
@given(password=st.text(min_size=1, max_size=24), form=st.sampled_from(sorted(FORMS)))
def test_no_password_ever_shows(password: str, form: str) -> None:
    dsn = FORMS[form](password, "db.example", 5432, "market")
    for text in outputs(dsn, password):
        assert password not in text, (dsn, text)
    assert read_back(dsn) == password  # what the server is sent


@settings(max_examples=100, deadline=None)
@given(first=st.text(min_size=1, max_size=8), second=st.text(min_size=1, max_size=8))
def test_two_passwords_in_one_url_never_show(first: str, second: str) -> None:
    dsn = f"postgresql://u:{quote(first, safe='')}@db/x?password={quote_plus(second)}"
    for text in outputs(dsn, first) + outputs(dsn, second):
        assert first not in text and second not in text, (dsn, text)


async def test_a_key_value_dsn_connects_and_a_wrong_password_is_not_shown(
    pg: PostgresServer, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    right = FORMS["key-value-spaced-upper"](PASSWORD, "127.0.0.1", pg.port, database)
    async with PostgresSink(right) as sink:
        assert await sink.query("SELECT current_database()") == database
        assert PASSWORD not in repr(sink)
    wrong = FORMS["key-value-quoted"](NASTY, "127.0.0.1", pg.port, database)
    with pytest.raises(PostgresSinkError) as refused:
        await PostgresSink(wrong).open()
    text = str(refused.value)
    assert "password authentication failed" in text and f"127.0.0.1:{pg.port}/{database}" in text
    assert "s3cr" not in text and refused.value.__cause__ is None


async def test_a_libpq_keyword_asyncpg_cannot_honour_is_named_before_connecting(
    pg: PostgresServer, pg_url: str
) -> None:
    """``connect_timeout`` used to reach the server as a setting it refuses."""
    database = pg_url.rsplit("/", 1)[1]
    dsn = f"host=127.0.0.1 port={pg.port} dbname={database} password=s3cr3t connect_timeout=10"
    with pytest.raises(PostgresSinkError, match="connect_timeout is libpq's") as refused:
        await PostgresSink(dsn).open()
    assert "s3cr3t" not in str(refused.value)
    ok = f"host=127.0.0.1 port={pg.port} dbname={database} user={USER} password={PASSWORD}"
    ok += " application_name=mine"
    async with PostgresSink(ok) as sink:
        assert await sink.query("SELECT current_setting('application_name')") == "mine"


async def test_the_cli_never_prints_the_password_of_any_form(pg: PostgresServer) -> None:
    """Each form against a server that refuses the password, and against a closed port."""
    closed = free_port()
    runs = {
        (form, port): FORMS[form](NASTY, "127.0.0.1", port, "postgres")
        for form in FORMS
        for port in (pg.port, closed)
    }
    env = {**os.environ, "YANDEX_MARKET_API_KEY": "k"}
    procs = {
        run: await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "yamarket_chats", "sync", "1001", "--postgres-url", dsn],
            *["--base-url", "http://127.0.0.1:9"],
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for run, dsn in runs.items()
    }
    for (form, port), proc in procs.items():
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode() + err.decode()
        assert proc.returncode == 1, (form, text)
        assert len(text.splitlines()) == 1 and "Traceback" not in text, (form, text)
        assert f"PostgreSQL at 127.0.0.1:{port}/postgres: cannot connect:" in text, (form, text)
        if port == pg.port:
            assert "password authentication failed" in text, (form, text)
        for spelling in (NASTY, quote(NASTY), quote_plus(NASTY), "s3cr", "ünï"):
            assert spelling not in text, (form, text)
