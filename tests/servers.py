"""Throwaway servers the tests start themselves on loopback (Redis, PostgreSQL).

A missing server binary skips a test on a developer's machine and fails it
in CI (``CI`` set), where ``.ci/run`` must have installed it. `RedisCluster`
is three redis-servers made one Redis Cluster by ``redis-cli --cluster create``
(redis-cli comes with redis-server: Debian's redis-tools).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.pg_server import postgres_url

__all__ = ["RedisCluster", "RedisServer", "free_port", "postgres_url"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ask(port: int, command: bytes, until: bytes) -> bytes:
    """The raw answer of the Redis on ``port`` to ``command``, read until ``until`` ends it."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        s.sendall(command + b"\r\n")
        data = b""
        while until not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    return b""


def _serving_pid(port: int) -> int | None:
    """The process id of the Redis server on ``port`` (INFO server), if one answers."""
    found = re.search(rb"process_id:(\d+)", _ask(port, b"INFO server", b"process_id:"))
    return int(found.group(1)) if found else None


def _binary(name: str) -> str:
    """The path of ``name``; skips the test locally, fails it under CI, if missing."""
    exe = shutil.which(name)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run should have installed it")
        pytest.skip(f"{name} is not installed (apt-get install redis-server)")
    return exe


class RedisServer:
    """A throwaway redis-server on a free loopback port, no persistence."""

    def __init__(self, *extra: str, cluster_bus: bool = False) -> None:
        exe = _binary("redis-server")
        self._extra = extra
        self._cluster_bus = cluster_bus  # a cluster node: a bus port of its own, per launch
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
        args += ["--appendonly", "no", *self._extra]
        if self._cluster_bus:
            args += ["--cluster-port", str(free_port())]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
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
        """Shut it down (SIGTERM); with no persistence, a later `restart` starts empty."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def kill(self) -> None:
        """Kill it as a crash would (SIGKILL): connections drop, nothing is saved."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def restart(self) -> None:
        """Stop it and start an empty one on the same port (the URL stays valid)."""
        self.stop()
        deadline = time.monotonic() + 10
        while not self._launch():  # the port is ours again once the old process is gone
            assert time.monotonic() < deadline, f"redis-server did not restart on {self.port}"


class RedisCluster:
    """Three throwaway redis-servers on loopback made one Redis Cluster, no replicas.

    Each node has its cluster bus on a second free port (``--cluster-port``,
    Redis 7; the default, port + 10000, may not exist) and its ``nodes.conf``
    in a temporary directory; ``redis-cli --cluster create`` spreads the
    16,384 slots over them. `url` is the first node's: a cluster client finds
    the others from it.
    """

    def __init__(self, nodes: int = 3) -> None:
        self._nodes = nodes
        self._cli = _binary("redis-cli")
        self._dir = tempfile.TemporaryDirectory(prefix="yamarket-redis-cluster-")
        self.servers: list[RedisServer] = []

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> None:
        """Start the nodes, join them, and return once every node says ``cluster_state:ok``."""
        for _ in range(self._nodes):
            folder = Path(self._dir.name) / str(len(self.servers))
            folder.mkdir()
            server = RedisServer(
                "--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf"),
                "--dir", str(folder), cluster_bus=True,
            )  # fmt: skip
            server.start()
            self.servers.append(server)
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        create = [self._cli, "--cluster", "create", *addresses]
        made = subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, f"redis-cli --cluster create failed: {made.stderr}"
        deadline = time.monotonic() + 30
        while not all(self._ready(server.port) for server in self.servers):
            assert time.monotonic() < deadline, "the Redis Cluster never became ready"
            time.sleep(0.02)

    def _ready(self, port: int) -> bool:
        info = _ask(port, b"CLUSTER INFO", b"cluster_known_nodes:")
        known = re.search(rb"cluster_known_nodes:(\d+)", info)
        return b"cluster_state:ok" in info and known is not None and int(known[1]) == self._nodes

    def stop(self) -> None:
        """Stop every node and remove their files."""
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self._dir.cleanup()
