"""Ids as a person types them (command lines): ASCII digits within the spec's int64.

One rule for every id the CLI takes, and for the fake's ``--businesses``;
only the standard library loads with it, so parsing a command line stays
light. `_validate` holds the checks of ids given to the client in Python.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["INT64_MAX", "parse_id"]

INT64_MAX: Final = 2**63 - 1  #: every id of the spec is an int64
# ASCII only: int() also takes "+1", "1_0", " 1" and other scripts' digits ("\u0661").
_DIGITS: Final = re.compile("[0-9]+")


def parse_id(text: str) -> int:
    """An id as typed: ASCII digits (leading zeros allowed), 1..2^63-1; else ValueError."""
    if _DIGITS.fullmatch(text) is None:
        raise ValueError(f"must be ASCII digits from 1 to {INT64_MAX}, got {text!a}")
    significant = text.lstrip("0")
    # By length first: int() refuses strings past 4300 digits with a ValueError of its own.
    if len(significant) > len(str(INT64_MAX)) or int(significant or "0") > INT64_MAX:
        raise ValueError(f"must be at most {INT64_MAX} (the API's int64), got {text!a}")
    if not significant:
        raise ValueError(f"must be from 1 to {INT64_MAX}, got {text!a}")
    return int(significant)
