"""Ids on the command line: ASCII digits, 1..2^63-1 (the spec's int64), refused by argparse.

What ``int()`` also takes (other scripts' digits, a sign, underscores, spaces)
is not an id; an id past int64 is refused as a usage error (exit 2) before
any sink is opened, never an OverflowError from SQLite. In-process: argparse
refuses before the command runs, so nothing here starts a process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from yamarket_chats.cli import run
from yamarket_chats.cli.parser import build_parser
from yamarket_chats.testing.__main__ import build_parser as build_fake_parser
from yamarket_chats.testing._options import config_from_args

INT64_MAX = 2**63 - 1
BAD_IDS = [
    "\u0661\u0660\u0660\u0661",  # Arabic-Indic digits
    "\uff11\uff10\uff10\uff11",  # full-width digits
    "+1001",
    "1_001",
    " 1001",
    "1001 ",
    "1001\n",
    "1e3",
    "1.0",
    "0",
    "000",
    "-1",
    "",
    str(INT64_MAX + 1),
    "9" * 5000,  # past int()'s digit limit: refused by length, not by a ValueError
]

# Every place the command takes an id, as argv with ID where the id goes.
ID_PLACES = [
    ["sync", "ID", "--db", "chats.db"],
    ["sync", "1001", "ID", "--db", "chats.db"],
    ["chats", "ID"],
    ["chats", "1001", "--order-id", "ID"],
    ["history", "ID", "5"],
    ["history", "1001", "ID"],
    ["history", "1001", "5", "--from", "ID"],
    ["send", "ID", "5", "-m", "hi"],
    ["send", "1001", "ID", "-m", "hi"],
]


def _argv(place: list[str], value: str) -> list[str]:
    return [value if arg == "ID" else arg for arg in place]


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("value", BAD_IDS)
@pytest.mark.parametrize("place", ID_PLACES, ids=" ".join)
def test_a_bad_id_is_a_usage_error_naming_the_argument_and_the_limit(
    place: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(_argv(place, value), capsys)
    assert "error: argument " in err and str(INT64_MAX) in err, err
    assert "Traceback" not in err
    assert err.isascii(), err  # the bad value is shown escaped: U+0661 reads as \u0661


@pytest.mark.parametrize("place", ID_PLACES, ids=" ".join)
def test_the_largest_int64_is_an_id_and_leading_zeros_are_allowed(place: list[str]) -> None:
    args = build_parser().parse_args(_argv(place, str(INT64_MAX)))
    assert INT64_MAX in _ids(args)
    args = build_parser().parse_args(_argv(place, "0042"))
    assert 42 in _ids(args)


def _ids(args: argparse.Namespace) -> list[int]:
    """Every id the namespace holds."""
    found: list[int] = []
    for name in ("business_id", "chat_id", "message_id_from"):
        if getattr(args, name, None) is not None:
            found.append(getattr(args, name))
    found += getattr(args, "business_ids", None) or []
    found += getattr(args, "order_ids", None) or []
    return found


def test_the_error_names_which_argument(capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(["history", "1001", "+5"], capsys)
    assert "argument CHAT_ID: " in err and "'+5'" in err, err
    err = _refused(["history", "\u0661\u0660\u0660\u0661", "5"], capsys)
    assert "argument BUSINESS_ID: " in err and r"'\u0661\u0660\u0660\u0661'" in err, err
    err = _refused(["chats", "1001", "--order-id", str(2**63)], capsys)
    assert "argument --order-id: " in err and "at most 9223372036854775807" in err, err


def test_a_business_id_past_int64_fails_before_the_sqlite_sink_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to reach SQLite and end in an OverflowError (exit 1)."""
    db = tmp_path / "chats.db"
    argv = ["sync", str(2**63), "--db", str(db), "--api-key", "k", "--base-url", "http://x"]
    with pytest.raises(SystemExit) as exited:
        run(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument BUSINESS_ID: " in err and "Overflow" not in err, err
    assert not db.exists()


@pytest.mark.parametrize("value", ["1001,+2", "1001, 2", "1_001", "\u0661", "0", str(2**63), ""])
def test_the_fakes_business_ids_are_parsed_as_strictly(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_fake_parser().parse_args(["--businesses", value])
    with pytest.raises(ValueError, match="--businesses") as refused:
        config_from_args(args)
    assert str(INT64_MAX) in str(refused.value) and str(refused.value).isascii()
    args = build_fake_parser().parse_args(["--businesses", f"7,0008,{INT64_MAX}"])
    assert config_from_args(args).businesses == (7, 8, INT64_MAX)
