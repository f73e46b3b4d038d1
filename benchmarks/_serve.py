"""The fake in its own process for one connection mode of the throughput run.

Modes: ``close`` (every answer says ``Connection: close``, like the real API),
``keep-alive`` (the fake keeps connections open) and ``tls`` (keep-alive over
HTTPS with a throwaway CA the fake makes at start and writes to a file that
the clients trust through ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._fake import fake_server

MODES = ("close", "keep-alive", "tls")


@dataclass(frozen=True)
class Served:
    """A running fake: where it is, and the environment its clients need."""

    url: str
    api_key: str
    business_id: int
    pid: int
    env: dict[str, str]


@contextlib.contextmanager
def serve(mode: str, chats: int, messages: int, *, limits: bool = False) -> Iterator[Served]:
    """Start the fake for `mode` (limits off unless `limits`) and stop it when done."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        extra: list[str] = []
        env = dict(os.environ)
        if mode != "close":
            extra.append("--keep-alive")
        if mode == "tls":
            ca = Path(folder, "ca.pem")
            extra += ["--tls-ca", str(ca)]
            env["SSL_CERT_FILE"] = str(ca)
        with fake_server(chats, messages, *extra, limits=limits) as fake:
            yield Served(fake.url, fake.api_key, fake.business_id, fake.pid, env)
