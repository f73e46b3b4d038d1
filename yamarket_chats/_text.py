"""Characters that must not reach a reader as they are: one table, for every output.

Text from buyers (messages, names) and from files is never trusted with a
screen: control characters can drive a terminal, bidirectional controls
make a text read differently from what it is (an MCP client showing a
reply for confirmation included), and line separators break a line-based
format. `ESCAPES` maps each such character to a visible escape; the CLI
derives its TSV, table-cell and log variants from it (`cli/output.py`), and
`shown` is the variant for text a person reads to confirm it.
"""

from __future__ import annotations

__all__ = ["ESCAPES", "shown"]

ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
ESCAPES.update({c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in ESCAPES})
# Line and paragraph separators; the bidirectional controls (Unicode's
# Bidi_Control: U+061C, U+200E-200F, U+202A-202E, U+2066-2069), which reorder
# what a screen shows, so text could read differently from what it is.
_BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
ESCAPES.update({c: f"\\u{c:04x}" for c in [0x2028, 0x2029, *_BIDI_CONTROLS]})

# Shown to a person: lines and tabs as they are, backslashes too.
_SHOWN = {c: e for c, e in ESCAPES.items() if chr(c) not in "\\\t\n"}


def shown(text: str) -> str:
    """``text`` as a person should read it: controls, bidi and separators escaped, lines kept."""
    return text.translate(_SHOWN)
