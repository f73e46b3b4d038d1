"""What several commands read from their arguments."""

from __future__ import annotations

import argparse
from typing import Any

from ..failures import UsageError

__all__ = ["check_utf8", "filters"]


def filters(args: argparse.Namespace) -> dict[str, Any]:
    """The chat filters (``--status`` ...) as keyword arguments of the client and `sync`."""
    return {
        "statuses": args.statuses,
        "types": args.types,
        "context_types": args.context_types,
        "order_ids": args.order_ids,
    }


def check_utf8(text: str, what: str) -> str:
    """Refuse text holding bytes that were not UTF-8 (Python keeps them as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else repr(bad)
        raise UsageError(
            f"{what} is not valid UTF-8 ({byte} at character {exc.start});"
            " check the terminal's or the file's encoding"
        ) from None
    return text
