"""The fake in its own process for one connection mode of the throughput run.

Modes: ``close`` (every answer says ``Connection: close``, like the real API),
``keep-alive`` (the fake keeps connections open) and ``tls`` (keep-alive over
HTTPS with a throwaway CA the fake makes at start and writes to a file that
the clients trust through ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
def serve(mode: str, chats: int, messages: int) -> Iterator[Served]:
    """Start the fake for `mode` (limits off) and stop it when done."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        command = [sys.executable, "-m", "yamarket_chats.testing", "--host", "127.0.0.1"]
        command += ["--port", "0"]
        command += ["--no-limits", "--chats", str(chats), "--messages", str(messages)]
        env = dict(os.environ)
        if mode != "close":
            command.append("--keep-alive")
        if mode == "tls":
            ca = Path(folder, "ca.pem")
            command += ["--tls-ca", str(ca)]
            env["SSL_CERT_FILE"] = str(ca)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            if not lines[0].startswith("Fake Yandex Market"):
                raise RuntimeError(f"the fake did not start: {lines!r}")
            url = lines[0].split(" at ", 1)[1].strip()
            business = int(lines[1].split(": ", 1)[1].split(",")[0])
            key = lines[2].split(": ", 1)[1].strip()
            yield Served(url, key, business, process.pid, env)
        finally:
            process.terminate()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
