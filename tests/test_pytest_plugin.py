"""The pytest plugin costs an unrelated test suite nothing, with or without pytest-asyncio.

Installing yamarket-chats loads the plugin in every pytest run of the
environment. ``python -X importtime`` lists every module a run imports: with
only pytest-asyncio and this plugin loaded, a suite that never asks for our
fixtures must not import the fake (aiohttp, msgspec, yamarket_chats.testing._server).
(``-s``: pytest would otherwise capture what importtime prints while a test runs.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unmeasured_env

_HEAVY = re.compile(r"^(aiohttp|msgspec|yamarket_chats\.testing\._server)(\.|$)")


def _imported(
    tmp_path: Path, test: str, *plugins: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    (tmp_path / "test_theirs.py").write_text(test)
    args = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-s",
    ]
    for plugin in plugins:
        args += ["-p", plugin]
    # Only the plugins named: another installed plugin may import aiohttp itself.
    env = {**unmeasured_env(), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [*args, "test_theirs.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done, names


@pytest.mark.parametrize("asyncio", [True, False], ids=["with-pytest-asyncio", "without"])
def test_an_unrelated_suite_imports_no_fake(tmp_path: Path, asyncio: bool) -> None:
    plugins = ["yamarket_chats.testing.pytest_plugin"]
    if asyncio:
        plugins.insert(0, "pytest_asyncio.plugin")
    done, names = _imported(tmp_path, "def test_ok():\n    assert True\n", *plugins)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    # The plugin was loaded and measured (importtime does not list a module
    # that the editable install's finder loads, but lists what it imports).
    assert "yamarket_chats._lazy" in names
    assert ("yamarket_chats.testing._pytest_fixtures" in names) == asyncio
    assert not sorted(n for n in names if _HEAVY.match(n))


def test_the_fixture_imports_the_fake_when_used(tmp_path: Path) -> None:
    test = (
        "import pytest\n\n"
        "@pytest.mark.asyncio\n"
        "async def test_fake(yamarket_fake):\n"
        "    assert yamarket_fake.url.startswith('http://127.0.0.1')\n"
    )
    done, names = _imported(
        tmp_path, test, "pytest_asyncio.plugin", "yamarket_chats.testing.pytest_plugin"
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "aiohttp" in names and "yamarket_chats.testing._app" in names
