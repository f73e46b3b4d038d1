"""What the commands print: tables, TSV fields, JSON Lines, one-line messages.

Text from users (messages, names) and from files (paths, a damaged line) is
never trusted with the terminal: tabs and newlines would break a TSV row's
columns, control characters could drive the terminal, and bidirectional
controls could make a text read differently from what it is. So every such
value is escaped for where it goes, and rich tables get it as `Text`, which
is never parsed as markup (``[red]`` typed by a buyer stays ``[red]``).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import AsyncIterator, Iterable, Sequence

import msgspec

from .._text import ESCAPES as _ESCAPES  # the one table of what is escaped
from .._text import shown
from ..models import Chat, ChatMessage

__all__ = [
    "chat_row",
    "json_lines",
    "log_text",
    "masked",
    "message_row",
    "one_line",
    "rich_available",
    "table",
    "tsv_field",
]

# A log line shows backslashes as they are.
_LOG_ESCAPES = {c: e for c, e in _ESCAPES.items() if c != ord("\\")}

_encoder = msgspec.json.Encoder()


def tsv_field(value: object) -> str:
    """A value as one TSV field: backslash, tab, newline, CR and control characters escaped."""
    return "" if value is None else str(value).translate(_ESCAPES)


def log_text(text: str) -> str:
    """`text` for a line of stderr: control characters escaped, backslashes as they are."""
    return text.translate(_LOG_ESCAPES)


def _as_token(secret: str) -> str:
    """The pattern of `secret` standing as a token: no word character glued to an
    edge of it that is itself a word character."""
    before = r"(?<!\w)" if re.match(r"\w", secret) else ""
    after = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return f"{before}{re.escape(secret)}{after}"


def one_line(text: str, secrets: Iterable[str | None]) -> str:
    """`text` on one line, with every secret blanked out as `masked` does."""
    return " ".join(masked(text, secrets).split()) or "-"


def masked(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret blanked out (``***``) where it stands as a token.

    A secret is matched by its exact value, and only where no word character
    (a letter or digit of any script, or ``_``) touches it on either side: a
    short key such as ``a1`` must not blank part of ``data1``. Punctuation is
    a boundary, so ``Api-Key:<key>`` or ``key=<key>`` is masked: a mask that
    misses is a leak, one that hits a stray ``x:a1`` costs nothing. A secret
    that starts or ends with punctuation (``y0_abc-``) has no such boundary
    on that side: it is masked whatever follows. The longest secret is tried
    first, so one holding another is masked whole.
    """
    values = sorted({s for s in secrets if s}, key=len, reverse=True)
    if values:
        text = re.sub("|".join(map(_as_token, values)), "***", text)
    return text


def rich_available() -> bool:
    """Whether the optional ``rich`` package is installed (found, not imported)."""
    return importlib.util.find_spec("rich") is not None


def _cell(value: object) -> str:
    # A terminal table's cell may span lines and shows backslashes as they are.
    return "" if value is None else shown(str(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A rich table on a terminal, else TSV; every cell is text, never markup."""
    if sys.stdout.isatty() and rich_available():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        rich_table = Table(*headers)
        for row in rows:
            # Text() is never parsed as markup (user text like "[red]" stays text).
            rich_table.add_row(*(Text(_cell(v)) for v in row))
        Console().print(rich_table)
        return
    out = sys.stdout
    out.write("\t".join(headers) + "\n")
    for row in rows:
        out.write("\t".join(tsv_field(v) for v in row) + "\n")
    out.flush()


async def json_lines(pages: AsyncIterator[Sequence[msgspec.Struct]]) -> None:
    """JSON Lines, a page at a time: whatever ends the run, each line is a whole object."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    async for items in pages:
        out.write(_encoder.encode_lines(items))
        out.flush()


def chat_row(chat: Chat) -> list[object]:
    """A chat as a row of the ``chats`` table."""
    ctx = chat.context
    customer = ctx.customer.name if ctx.customer else None
    return [
        chat.chat_id,
        chat.status,
        chat.type,
        ctx.type,
        chat.order_id,
        customer,
        chat.updated_at,
    ]


def message_row(m: ChatMessage) -> list[object]:
    """A message as a row of the ``history`` table; its files follow the text."""
    files = [f"[{p.name}, {p.size} bytes]" for p in m.payload or ()]
    text = " ".join(part for part in [m.message, *files] if part)
    return [m.message_id, m.created_at, m.sender, text]
