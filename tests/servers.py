"""Throwaway servers the tests start themselves on loopback (Redis, PostgreSQL).

A missing server binary skips a test on a developer's machine and fails it
in CI (``CI`` set), where ``.ci/run`` must have installed it.
"""

from __future__ import annotations

import contextlib
import os
import re
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


def _serving_pid(port: int) -> int | None:
    """The process id of the Redis server on ``port`` (INFO server), if one answers."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        s.sendall(b"INFO server\r\n")
        data = b""
        while b"process_id:" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        found = re.search(rb"process_id:(\d+)", data)
        return int(found.group(1)) if found else None
    return None


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
        """Start it; a port another process (another xdist worker) took is retried."""
        for _ in range(5):
            if self._launch():
                return
            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
        raise RuntimeError("redis-server did not start")

    def _launch(self) -> bool:
        args = [self._exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        proc = subprocess.Popen([*args, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if _serving_pid(self.port) == proc.pid:  # ours, not a server already there
                self._proc = proc
                return True
            time.sleep(0.02)
        proc.kill()
        proc.wait(10)
        return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
