"""A throwaway PostgreSQL server for tests and benchmarks, like redis-server in the Redis tests.

``initdb`` into a fresh temporary directory, then ``postgres`` on 127.0.0.1
and a free port, its unix socket inside that directory, fsync off (the tests
kill clients, never the server). The binaries come from ``PATH`` or from
``/usr/lib/postgresql/*/bin`` (where Debian's ``apt-get install postgresql``
puts them). PostgreSQL refuses to run as root, so as root (CI containers) the
server runs as the ``postgres`` system user, or ``nobody`` when there is none,
and owns the temporary directory.

Password authentication over TCP is on, so every URL carries a password, as in
a deployment: tests can check that it never leaks.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

USER = "yamarket"
PASSWORD = "pg-secret-5d1c"  # only ever used by this throwaway server
_BINARIES = ("initdb", "postgres", "pg_isready", "psql")


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_bin_dir() -> Path | None:
    """A directory holding initdb, postgres, pg_isready and psql; ``None`` if there is none."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    for folder in candidates:
        if all((folder / name).is_file() for name in _BINARIES):
            return folder
    return None


def missing_message() -> str:
    """Why the Postgres tests cannot run, and how to fix it."""
    return (
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or in "
        "/usr/lib/postgresql/*/bin: apt-get install postgresql"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; ``None``: run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; `start()` then `stop()`.

    :param settings: extra ``-c name=value`` server settings.
    """

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        folder = find_bin_dir()
        if folder is None:
            raise PostgresMissing(missing_message())
        self.bin = folder
        self.settings = {
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self.port = 0
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids = _run_as()
        self._databases = 0

    # -- lifecycle -------------------------------------------------------------

    def _base_dir(self) -> str | None:
        """Where the temporary directory goes: somewhere the server's user can reach."""
        base = Path(tempfile.gettempdir()).resolve()
        if self._ids is None or all(os.stat(p).st_mode & 0o001 for p in (base, *base.parents)):
            return None
        return "/tmp"  # $TMPDIR is private to root (e.g. /root/tmp)

    def _popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        assert self.root is not None
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.root)}
        if self._ids is not None:
            kwargs.update(user=self._ids[0], group=self._ids[1], extra_groups=[])
        return subprocess.Popen(args, cwd=self.root, env=env, **kwargs)

    def start(self) -> None:
        """initdb and start the server; raises with the server's log if it fails."""
        self.root = Path(tempfile.mkdtemp(prefix="yamarket-pg-", dir=self._base_dir()))
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        (self.root / "sock").mkdir()
        if self._ids is not None:
            for path in (self.root, pwfile, self.root / "sock"):
                os.chown(path, *self._ids)
        init = self._popen(
            [
                str(self.bin / "initdb"),
                "-D", str(self.root / "data"),
                "-U", USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = init.communicate(timeout=120)
        if init.returncode != 0:
            self._cleanup()
            raise RuntimeError(f"initdb failed:\n{out.decode(errors='replace')}")
        for _attempt in range(5):  # a free port can be taken before the server binds it
            if self._launch():
                return
        log = self.log()
        self._cleanup()
        raise RuntimeError(f"postgres did not start:\n{log}")

    def _launch(self) -> bool:
        assert self.root is not None
        self.port = _free_port()
        args = [str(self.bin / "postgres"), "-D", str(self.root / "data")]
        args += ["-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.root / "sock")]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        log_path = self.root / "postgres.log"
        with open(log_path, "ab") as log:
            if self._ids is not None:
                os.chown(log_path, *self._ids)
            self._proc = self._popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            # Asked on its own socket directory: a server another xdist worker
            # started on the same port cannot answer for ours (and ours, unable
            # to bind that port, exits: the next try takes another).
            sock = str(self.root / "sock")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", sock, "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.05)
        self._stop_process()
        return False

    def log(self) -> str:
        """The server's log so far."""
        if self.root is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.root / "postgres.log").read_text(errors="replace")
        return ""

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, no wait
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def _cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        self._stop_process()
        self._cleanup()

    # -- use -------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """``postgresql://`` URL of ``database``, with the password."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql over the unix socket (trusted); its output, unaligned."""
        assert self.root is not None
        done = subprocess.run(
            [
                str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.root / "sock"), "-p", str(self.port), "-U", USER,
                "-d", database, "-c", sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        self._databases += 1
        name = f"t{self._databases}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)


@contextlib.contextmanager
def postgres_server(**kwargs: Any) -> Iterator[PostgresServer]:
    """A running `PostgresServer` for the ``with`` block."""
    server = PostgresServer(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def server_or_skip(**kwargs: Any) -> PostgresServer:
    """A `PostgresServer`, or skip the test when the binaries are missing (fail under CI)."""
    import pytest

    try:
        return PostgresServer(**kwargs)
    except PostgresMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: .ci/run should have installed it)")
        pytest.skip(str(exc))


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """The URL of a fresh database on a throwaway server (skips, or fails under CI, if missing)."""
    server = server_or_skip()
    server.start()
    try:
        yield server.create_database()
    finally:
        server.stop()
