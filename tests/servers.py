"""Throwaway servers the tests start themselves on loopback (Redis, PostgreSQL).

A missing server binary skips a test on a developer's machine and fails it
in CI (``CI`` set), where ``.ci/run`` must have installed it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.pg_server import postgres_url

__all__ = ["RedisServer", "free_port", "postgres_url"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway redis-server on a free loopback port, no persistence."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is missing: .ci/run should have installed it")
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._exe = exe
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self._exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self._proc = subprocess.Popen([*args, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
