"""One test session per supported Python that this machine has: ``nox --list``.

An interpreter is found on PATH as ``pythonX.Y``, or among pyenv's builds.

``make test`` runs the whole suite on the default interpreter (CI: 3.11). Each
session here makes its own venv with ``.[dev]`` (so ``[dev]`` is shown to
install on that Python) and runs the subset below: every test of the code
whose behaviour can differ between Python versions (asyncio, the client,
limits, the fake, sinks, notifications, the CLI, the blocking facade). It
leaves out what is the same code on every Python and costs minutes: the real
Redis and PostgreSQL servers, the fleet, building the packages, the docs
snippets, the benchmarks, and the schemathesis fuzzer (which needs 3.11).

    nox                      # every session this machine can run
    nox -s tests-3.10        # one of them
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

SUPPORTED = ("3.10", "3.11", "3.12", "3.13")  # docs/versioning.md says until when

SUBSET = [
    "tests/test_client_input.py",
    "tests/test_client_operations.py",
    "tests/test_client_resilience.py",
    "tests/test_client_web.py",
    "tests/test_environ.py",
    "tests/test_retry.py",
    "tests/test_sessions.py",
    "tests/test_keepalive.py",
    "tests/test_limits_rules.py",
    "tests/test_limits_headers.py",
    "tests/test_fake_api.py",
    "tests/test_fake_market.py",
    "tests/test_fake_limits.py",
    "tests/test_fake_faults.py",
    "tests/test_ingest.py",
    "tests/test_sinks.py",
    "tests/test_notifications.py",
    "tests/test_notifications_guards.py",
    "tests/test_cli.py",
    "tests/test_cli_output.py",
    "tests/test_blocking.py",
    "tests/test_desk_mcp.py",
    "tests/test_pytest_plugin.py",
]


def _runs(python: str | None) -> bool:
    """Whether `python` runs (a pyenv shim of a version not selected is on PATH but fails)."""
    return (
        python is not None
        and subprocess.run([python, "-c", ""], capture_output=True).returncode == 0
    )


def _find(version: str) -> bool:
    """Whether ``pythonX.Y`` runs from PATH, after putting pyenv's build of it first
    on PATH when only a shim answered (so nox, which looks it up there, finds it)."""
    if _runs(shutil.which(f"python{version}")):
        return True
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for folder in sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin"))):
        if _runs(os.path.join(folder, f"python{version}")):
            os.environ["PATH"] = os.pathsep.join([folder, os.environ.get("PATH", "")])
            return True
    return False


PRESENT = [version for version in SUPPORTED if _find(version)]


@nox.session(python=PRESENT)
def tests(session: nox.Session) -> None:
    """The subset above, on 2 pytest-xdist workers."""
    session.install("--no-compile", "-e", ".[dev]")
    session.run("pytest", "-q", "-n", "2", "-p", "no:randomly", *SUBSET, *session.posargs)
