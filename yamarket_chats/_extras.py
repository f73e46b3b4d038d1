"""The optional dependencies: a missing one names the ``pip install`` that brings it.

A module built on an extra imports it inside ``try``, and turns the failure
into `missing_extra`'s error, so that ``import yamarket_chats.redis_limits``
without ``[redis]`` says what to run instead of a bare
``ModuleNotFoundError: No module named 'redis'``.
"""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(error: ModuleNotFoundError, extra: str, what: str) -> ImportError:
    """The error to raise instead of `error`: it names ``pip install 'yamarket-chats[extra]'``.

    `what` is the module that needs the extra, e.g. ``"yamarket_chats.redis_limits"``.
    """
    missing = (error.name or "").partition(".")[0] or "a dependency"  # the package
    return ImportError(
        f"{what} needs {missing}, which is not installed: pip install 'yamarket-chats[{extra}]'",
        name=missing,
    )
