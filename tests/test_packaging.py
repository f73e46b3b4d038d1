"""What users get from the package index: the sdist, the wheel, its metadata and its pytest plugin.

The sdist and wheel are built once per run (shared by the xdist workers) from a copy of the working
tree, with the build backend the project declares, inside a fresh venv that
has pytest but not pytest-asyncio. Needs the package index (or pip's
configured wheel directory) for setuptools, pytest and the runtime
dependencies; about 30-60 s on a cold cache.
"""

from __future__ import annotations

import email
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from tests.conftest import unmeasured_env

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
# The address earlier versions linked to, which no repository answers.
PLACEHOLDER = "github.com/yamarket-chats/yamarket-chats"
# Never part of a distribution: local state, caches and build output.
JUNK = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.py[cod]", ".*_cache", ".hypothesis", "build", "dist",
    "*.egg-info", "*.sqlite3", "*.db", ".work", ".coverage*",
)  # fmt: skip
SHIPPED_TREES = ("tests", "benchmarks", "docs")


@dataclass(frozen=True)
class Built:
    source: Path  # the copy of the working tree it was built from
    python: Path  # the fresh venv's interpreter (pytest, no pytest-asyncio)
    sdist: Path
    wheel: Path


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist and wheel, built once per run: the first xdist worker to ask builds
    them under a lock in the run's shared temporary directory, the others wait."""
    run_dir = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # gw0, gw1...: their parent is the run's
        run_dir = run_dir.parent
    base = run_dir / "packaging"
    with open(run_dir / "packaging.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released with the file
        if not (base / "built").exists():
            _build(base)
            (base / "built").touch()
    python = base / "venv" / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    [sdist] = (base / "dist").glob("*.tar.gz")
    [wheel] = (base / "dist").glob("*.whl")
    return Built(base / "src", python, sdist, wheel)


def _build(base: Path) -> None:
    """A copy of the tree, a fresh venv with pytest, and the sdist and wheel in dist/."""
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=JUNK)
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    _run(python, "-m", "pip", "install", "-q", "--no-compile", "setuptools>=77", "pytest")
    for hook in ("build_sdist", "build_wheel"):  # one process each, as pip and build do
        _run(python, "-c", f"import sys, setuptools.build_meta as b; b.{hook}(sys.argv[1])",
             base / "dist", cwd=source)  # fmt: skip
    # A plain install, no extras: what `pip install yamarket-chats` gives.
    [wheel] = (base / "dist").glob("*.whl")
    _run(python, "-m", "pip", "install", "-q", "--no-compile", wheel)


def _version_in_source() -> str:
    text = (ROOT / "yamarket_chats" / "_version.py").read_text("utf-8")
    [version] = re.findall(r'^__version__ = "([^"]+)"$', text, flags=re.M)
    return version


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(zf.read(name))


def test_sdist_ships_the_whole_test_suite_and_it_collects(built: Built, tmp_path: Path) -> None:
    with tarfile.open(built.sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path, filter="data")
    expected = {
        p.relative_to(built.source).as_posix()
        for tree in SHIPPED_TREES
        for p in (built.source / tree).rglob("*")
        if p.is_file()
    }
    assert {"tests/conftest.py", "tests/fake_helpers.py", "tests/spec/chats-openapi.yaml"} <= names
    assert expected - names == set()
    assert "Makefile" in names and "yamarket_chats/_entry.py" in names
    assert not [n for n in names if "/" not in n and n.endswith(".py") and n != "noxfile.py"]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Every module the suite imports is shipped: collection finds no missing file.
    done = subprocess.run(
        # (a copy of the package is no part of this one's coverage)
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--assert=plain"],  # collection is the question, not assertion rewriting
        cwd=tmp_path / top, capture_output=True, text=True, timeout=300, env=unmeasured_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^\d+ tests? collected", done.stdout, re.M), done.stdout[-500:]


def test_wheel_metadata_for_the_package_index(built: Built) -> None:
    meta = _metadata(built.wheel)
    assert meta["Version"] == _version_in_source()  # one source: yamarket_chats/_version.py
    assert not any(PLACEHOLDER in u for u in meta.get_all("Project-URL") or [])
    assert meta["License-Expression"] == "MIT"
    classifiers = set(meta.get_all("Classifier") or [])
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    for prefix in ("Framework :: AsyncIO", "Framework :: aiohttp", "Intended Audience ::",
                   "Operating System ::", "Topic ::", "Typing :: Typed"):  # fmt: skip
        assert any(c.startswith(prefix) for c in classifiers), prefix
    with zipfile.ZipFile(built.wheel) as zf:
        names = set(zf.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    assert {"yamarket_chats/_entry.py", "yamarket_chats/py.typed"} <= names
    # Nothing outside the package: no stray top-level module in site-packages.
    assert {n.split("/")[0] for n in names} == {"yamarket_chats", entry_points.split("/")[0]}
    assert "yamarket-chats = yamarket_chats._entry:main" in scripts
    assert "yamarket_chats = yamarket_chats.testing.pytest_plugin" in scripts


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("yamarket_chats.redis_limits", "redis"),
        ("yamarket_chats.otel", "otel"),
        ("yamarket_chats.desk.mcp", "mcp"),
    ],
)
def test_a_plain_install_names_the_extra_a_module_needs(
    built: Built, module: str, extra: str
) -> None:
    done = subprocess.run(
        [built.python, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and f"pip install 'yamarket-chats[{extra}]'" in last


def test_the_postgres_sink_without_asyncpg_names_its_extra(built: Built, tmp_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from yamarket_chats import PostgresSink\n"
        "async def main():\n"
        "    async with PostgresSink('postgresql://127.0.0.1:9/db'):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [built.python, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert "pip install 'yamarket-chats[postgres]'" in done.stderr.strip().splitlines()[-1]


def test_the_readmes_install_names_the_wheel_the_build_makes(built: Built) -> None:
    """No instruction that fails: the README installs the wheel of this version by name."""
    readme = (ROOT / "README.md").read_text("utf-8")
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    [named] = re.findall(r"dist/(\S+\.whl)", install)
    assert named == built.wheel.name
    assert "python3 -m pip install '.[cli]'" in install
    assert "python3 -m pip wheel --no-deps -w dist ." in install


def test_readme_links_are_relative_and_resolve_in_a_checkout() -> None:
    """No repository is published yet: README.md links into the checkout it sits in,
    never to a placeholder address, and every link it has resolves there."""
    text = (ROOT / "README.md").read_text("utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # code is not links
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)", text)
    targets += re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", text)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", text, flags=re.M)
    assert len(targets) > 10
    for target in targets:
        assert PLACEHOLDER not in target, target
        if not re.match(r"(https?://|mailto:|#)", target):
            assert (ROOT / target.split("#")[0]).exists(), (
                f"README links to a missing file: {target}"
            )


def test_pytest_plugin_is_harmless_without_pytest_asyncio(built: Built, tmp_path: Path) -> None:
    """`pip install yamarket-chats pytest`, then pytest in any project: no plugin error."""
    probe = "import importlib.util as u; print(u.find_spec('pytest_asyncio') is None)"
    assert _run(built.python, "-c", probe).strip() == "True"
    (tmp_path / "test_theirs.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    out = _run(built.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert "1 passed" in out
    # Loading the plugin (as every pytest run there does) imports neither aiohttp nor msgspec.
    probe = (
        "import sys, yamarket_chats.testing.pytest_plugin;"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'msgspec')))"
    )
    assert _run(built.python, "-c", probe, cwd=tmp_path).strip() == "[]"
    # Our fixtures: the plain one works, the async one says what it needs.
    (tmp_path / "test_fake.py").write_text(
        textwrap.dedent("""
            def test_config(yamarket_fake_config):
                assert yamarket_fake_config.businesses

            def test_fake(yamarket_fake):
                pass
        """)
    )
    done = subprocess.run(
        [built.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_fake.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed, 1 error" in done.stdout
    assert "needs pytest-asyncio: pip install pytest-asyncio" in done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_only_the_cli_extra(built: Built) -> None:
    """On a fresh machine `make demo` installs the package and [cli]; `make test` adds [dev]."""
    demo = _run("make", "-n", "demo", cwd=built.source)
    installs = [line for line in demo.splitlines() if "pip install" in line]
    assert installs and all(".[cli]" in line for line in installs), demo
    assert "dev" not in demo and "bench" not in demo
    assert "yamarket-chats demo" in demo
    test = _run("make", "-n", "test", cwd=built.source)
    assert any(".[dev,bench]" in line for line in test.splitlines() if "pip install" in line), test
    readme = (ROOT / "README.md").read_text("utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    [block] = [b for b in quick.split("```sh")[1:] if "make demo" in b]
    block = block.split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.splitlines() if line.strip()] == [
        "make demo",
        "make test",
    ]
