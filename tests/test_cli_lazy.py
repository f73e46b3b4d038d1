"""What installing the package costs others: lazy public names, the pytest plugin, the command.

Every pytest run of an environment with yamarket-chats installed loads its
pytest plugin, and the console script must catch signals from its first
instant: neither may import aiohttp or msgspec by importing the package.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import yamarket_chats
import yamarket_chats.testing

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("aiohttp", "msgspec", "yarl", "multidict", "aiolimiter")
PACKAGES = [yamarket_chats, yamarket_chats.testing]


def _python(code: str, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize(
    "module",
    [
        "yamarket_chats",
        "yamarket_chats.testing",
        "yamarket_chats.testing.pytest_plugin",
        "yamarket_chats._entry",
        "yamarket_chats.__main__",
    ],
)
def test_importing_loads_nothing_heavy(module: str) -> None:
    out = _python(f"""
        import sys
        import {module}
        heavy = {HEAVY!r}
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        print(sorted(m for m in sys.modules if m.startswith("yamarket_chats")))
    """)
    heavy, ours = out.splitlines()
    assert heavy == "[]", f"import {module} loaded {heavy}"
    assert set(ast.literal_eval(ours)) <= {
        "yamarket_chats",
        "yamarket_chats._lazy",
        "yamarket_chats._version",
        "yamarket_chats._environ",
        "yamarket_chats._ids",
        "yamarket_chats.testing",
        "yamarket_chats.testing.pytest_plugin",
        "yamarket_chats._entry",
        "yamarket_chats.__main__",
    }


def _imported(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reported loading."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line and "imported package" not in line
    }


@pytest.mark.parametrize("argv", [[], ["--help"]], ids=["bare", "--help"])
def test_python_dash_m_yamarket_chats_is_the_command_and_shows_help(argv: list[str]) -> None:
    """``python -m yamarket_chats`` runs the command; bare, it shows the help (exit 0)
    and, like ``--help``, loads neither rich nor the client, the sinks or the fake."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "yamarket_chats", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: yamarket-chats "), done.stdout
    for command in ("sync", "chats", "history", "send", "fake-server", "demo", "Exit codes"):
        assert command in done.stdout
    imported = _imported(done.stderr)
    assert {"yamarket_chats._entry", "yamarket_chats.cli.parser"} <= imported
    assert not {m for m in imported if m.split(".")[0] in ("rich", "aiohttp", "redis", "asyncpg")}
    ours = {m.removeprefix("yamarket_chats.") for m in imported if m.startswith("yamarket_chats.")}
    assert not {m for m in ours if m.startswith(("client", "sinks", "fleet", "_transport"))}
    assert not ours & {"testing._server", "testing._app"}
    assert [line for line in done.stderr.splitlines() if not line.startswith("import time:")] == []


@pytest.mark.parametrize("package", ["yamarket_chats", "yamarket_chats.testing"])
def test_every_public_name_resolves_from_a_fresh_interpreter(package: str) -> None:
    out = _python(f"""
        import importlib
        package = importlib.import_module({package!r})
        listed = dir(package)
        missing = [n for n in package.__all__ if n not in listed]
        assert not missing, f"dir() lacks {{missing}}"
        for name in package.__all__:
            value = getattr(package, name)
            exec(f"from {package} import {{name}} as imported")
            assert imported is value, name
            assert vars(package)[name] is value, name  # kept: __getattr__ runs once
        print(len(package.__all__))
    """)
    assert int(out) == len(importlib.import_module(package).__all__)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_unknown_names_raise_attribute_error(package: object) -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        package.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(package, "__wrapped__")


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_the_lazy_map_matches_all_and_the_type_checking_imports(package: object) -> None:
    """One list of names: ``__all__``, the name->module map and what type checkers see."""
    assert isinstance(package.__file__, str)  # type: ignore[attr-defined]
    tree = ast.parse(Path(package.__file__).read_text("utf-8"))  # type: ignore[attr-defined]
    [guard] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    seen = {
        alias.name: "." * node.level + (node.module or "")
        for node in guard.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    modules = package._MODULES  # type: ignore[attr-defined]
    assert seen == modules
    assert set(modules) == set(package.__all__)  # type: ignore[attr-defined]
    assert len(package.__all__) == len(set(package.__all__))  # type: ignore[attr-defined]


def test_mypy_strict_sees_every_public_name(tmp_path: Path) -> None:
    """A user's module importing every public name type-checks under --strict."""
    names = ", ".join(yamarket_chats.__all__)
    fake_names = ", ".join(yamarket_chats.testing.__all__)
    user = tmp_path / "user_code.py"
    user.write_text(
        textwrap.dedent(f"""
            from yamarket_chats import {names}
            from yamarket_chats.testing import {fake_names}
            import yamarket_chats


            async def main(api_key: str) -> int:
                async with ChatsClient(api_key=api_key) as client:
                    page: ChatsPage = await client.get_chats(1001)
                    limit: RateLimit = DEFAULT_LIMITS["get_chats"] or RateLimit(1, 1.0)
                    config = FakeMarketConfig()
                    version: str = yamarket_chats.__version__
                    return len(page.chats) + limit.amount + len(config.businesses) + len(version)
        """)
    )
    # and a name that does not exist is still an error, not Any from __getattr__
    (tmp_path / "user_typo.py").write_text("from yamarket_chats import NoSuchName\n")
    cache = tmp_path / "mypy_cache"
    if (ROOT / ".mypy_cache").is_dir():  # warm from `make lint` (CI runs it first)
        shutil.copytree(ROOT / ".mypy_cache", cache)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
         str(user), str(tmp_path / "user_typo.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(errors) == 1 and "user_typo.py:1:" in errors[0], done.stdout
    assert "NoSuchName" in errors[0]


def test_the_command_imports_only_what_the_command_needs() -> None:
    """Parsing loads neither the client nor the sinks; a command's module loads what
    it runs; the fake and the fleet wait for their commands, optional packages for
    their options (rich, redis, asyncpg and OpenTelemetry are installed here)."""
    out = _python("""
        import sys
        from yamarket_chats.cli import run
        from yamarket_chats.cli.commands import command
        from yamarket_chats.cli.parser import build_parser

        def loaded():
            ours = [m.removeprefix("yamarket_chats.") for m in sys.modules
                    if m.startswith("yamarket_chats.") and m.split(".")[1] != "cli"]
            optional = ("rich", "redis", "asyncpg", "opentelemetry")
            return sorted(ours + [m for m in sys.modules if m.split(".")[0] in optional])

        build_parser().parse_args(["sync", "1", "--worker", "--follow", "--redis-url", "x"])
        print(loaded())
        command("chats"), command("history"), command("send")
        print(loaded())
        command("sync")
        print(loaded())
    """)
    parsed, reading, syncing = (set(ast.literal_eval(line)) for line in out.splitlines())
    options = {"testing", "testing._options", "testing._config"}  # the fake's options: no fake
    light = {"_lazy", "_version", "_environ", "_ids", "_text", "errors", "models", *options}
    assert parsed <= light
    assert reading <= light  # the client comes with the run
    assert not {m for m in syncing - options if m.startswith(("testing", "fleet"))}
    assert not {m for m in syncing if m.split(".")[0] in ("rich", "redis", "asyncpg")}
    assert not {m for m in syncing if m.startswith("opentelemetry")}
    assert {"client", "sinks.sqlite", "sinks.jsonl"} <= syncing


def test_the_desk_commands_load_neither_the_client_nor_the_mcp_sdk() -> None:
    """``due`` reads a file: no client, no aiohttp, no sink class; ``mcp`` loads the
    SDK only when it runs (its import costs most of a second)."""
    out = _python("""
        import sys
        from yamarket_chats.cli.commands import command

        command("due"), command("mcp")
        print(sorted(m for m in sys.modules if m.startswith("yamarket_chats.")))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("aiohttp", "mcp", "rich")))
    """)
    ours, heavy = (ast.literal_eval(line) for line in out.splitlines())
    assert "yamarket_chats.desk._queue" in ours
    sinks = (
        "yamarket_chats.sinks.sqlite",
        "yamarket_chats.sinks.postgres",
        "yamarket_chats.sinks.jsonl",
    )
    assert not [m for m in ours if m.startswith(("yamarket_chats.client", *sinks))]
    assert "yamarket_chats.desk.mcp" not in ours
    assert heavy == []


def test_the_command_lives_in_the_package() -> None:
    """No stray top-level module: the console script is ``yamarket_chats._entry:main``."""
    [script] = [
        ep
        for ep in importlib.metadata.entry_points(group="console_scripts")
        if ep.name == "yamarket-chats"
    ]
    assert script.value == "yamarket_chats._entry:main"
    assert not (ROOT / "_yamarket_chats_cli.py").exists()
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert "_yamarket_chats_cli" not in pyproject and "py-modules" not in pyproject
    assert "_yamarket_chats_cli" not in (ROOT / "Makefile").read_text("utf-8")


# -- the pytest plugin, loaded by hand (PYTEST_DISABLE_PLUGIN_AUTOLOAD) -------------------

_USER_TESTS = """
import pytest

@pytest.mark.asyncio
async def test_fake(yamarket_fake):
    assert yamarket_fake.url.startswith("http://127.0.0.1:")

def test_config(yamarket_fake_config):
    assert yamarket_fake_config.businesses
"""


def _pytest(tmp_path: Path, *plugins: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(_USER_TESTS)
    options = [arg for plugin in plugins for arg in ("-p", plugin)]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *options, "-p", "yamarket_chats.testing.pytest_plugin", "test_user.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("asyncio_plugin", ["pytest_asyncio.plugin", "asyncio"])
def test_plugin_finds_pytest_asyncio_loaded_by_hand(tmp_path: Path, asyncio_plugin: str) -> None:
    """pytest-asyncio registered under its module's name (not "asyncio") still counts."""
    done = _pytest(tmp_path, asyncio_plugin)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_plugin_without_pytest_asyncio_says_what_to_do(tmp_path: Path) -> None:
    # `-p pytest_asyncio` imports the package, which registers none of its hooks.
    done = _pytest(tmp_path, "pytest_asyncio")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the yamarket_fake fixture needs pytest-asyncio" in done.stdout
    assert "-p pytest_asyncio.plugin" in done.stdout
