"""Every Python snippet in README.md and docs/*.md runs, against the fake server.

Each fenced block whose info string is ``python`` is a test. It runs as a script
in a subprocess (``python -c``) in a fresh directory, with the environment a
real deployment would give it, pointed at a fake Market this test starts:
``YANDEX_MARKET_API_KEY``, ``YANDEX_MARKET_BASE_URL``, ``YANDEX_MARKET_BUSINESS_ID`` (a
business with chats) and ``YANDEX_MARKET_CHAT_ID`` (one of its chats): the variables
the README's table names.

HTML comments just before a fence steer the run:

- ``<!-- docs-test: continue -->``: the block continues the previous one (the
  two run as one script, the test named after the first);
- ``<!-- docs-test: needs redis -->`` / ``needs postgres`` / ``needs redis-cluster``:
  the test starts that server (a cluster: three nodes) and sets ``REDIS_URL`` /
  ``POSTGRES_URL`` / ``REDIS_CLUSTER_URL`` (one node's address);
- ``<!-- docs-test: app -->``: a server module; it must import and define
  ``app`` (it is not served);
- ``<!-- docs-test: pytest -->``: a test module, run by pytest with
  pytest-asyncio in its default (strict) mode, as a user's suite would.

A block that is not Python to run is fenced as ``bash``/``console``/``text``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import unmeasured_env
from yamarket_chats.testing import FakeMarketConfig, run_fake_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET_TIMEOUT = 90.0

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
_MARK = re.compile(r"<!--\s*docs-test:\s*(?P<what>[^>]*?)\s*-->")


@dataclass
class Snippet:
    """One runnable script: a block and the blocks that continue it."""

    path: Path
    line: int
    code: str
    needs: set[str] = field(default_factory=set)
    app: bool = False
    pytest: bool = False

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract(path: Path) -> list[Snippet]:
    """The Python snippets of one Markdown file, continuations merged."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    marks: list[str] = []
    i = 0
    while i < len(lines):
        text = lines[i]
        mark = _MARK.search(text)
        if mark:
            marks.append(mark.group("what"))
            i += 1
            continue
        match = _FENCE.match(text)
        if not match:
            if text.strip():
                marks = []  # a mark applies to the fence right after it
            i += 1
            continue
        indent, fence, info = match.group("indent"), match.group("fence"), match.group("info")
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1  # the closing fence
        if info.lower() not in ("python", "py", "python3"):
            marks = []
            continue
        code = "\n".join(body) + "\n"
        words = " ".join(marks).split()
        marks = []
        if "continue" in words:
            if not snippets:
                raise AssertionError(f"{path}: a continuation block with nothing before it")
            snippets[-1].code += "\n" + code
            continue
        needs = {w for w in words if w not in ("needs", "app", "pytest")}
        line = i - len(body) - 1
        snippets.append(
            Snippet(path, line, code, needs, app="app" in words, pytest="pytest" in words)
        )
    return snippets


SNIPPETS = [s for path in DOCS for s in extract(path)]


def test_every_markdown_file_is_scanned_and_has_snippets() -> None:
    """The harness finds the blocks it should (a broken regex must not pass silently)."""
    assert any(s.path.name == "README.md" for s in SNIPPETS)
    fenced = sum(
        1
        for path in DOCS
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"^\s*```+\s*(python|py|python3)\s*$", line)
    )
    assert fenced == sum(1 for path in DOCS for _ in extract(path)) + sum(
        path.read_text(encoding="utf-8").count("docs-test: continue") for path in DOCS
    )


@contextlib.contextmanager
def _redis_url() -> Iterator[str]:
    from tests.servers import RedisServer

    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def _redis_cluster_url() -> Iterator[str]:
    from tests.servers import RedisCluster

    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@contextlib.asynccontextmanager
async def _services(needs: set[str]) -> AsyncIterator[dict[str, str]]:
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if "redis" in needs:
            env["REDIS_URL"] = stack.enter_context(_redis_url())
        if "redis-cluster" in needs:
            env["REDIS_CLUSTER_URL"] = stack.enter_context(_redis_cluster_url())
        if "postgres" in needs:
            from tests.servers import postgres_url

            env["POSTGRES_URL"] = stack.enter_context(postgres_url())
        yield env


_APP_CHECK = """
import runpy, sys
namespace = runpy.run_path(sys.argv[1])
assert "app" in namespace, "a docs-test: app block must define `app`"
"""


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
async def test_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    config = FakeMarketConfig(businesses=(1001, 2002), chats_per_business=3, messages_per_chat=40)
    async with run_fake_server(config) as fake, _services(snippet.needs) as services:
        business = config.businesses[0]
        chat = fake.market.chats(business)[0]
        env = {
            **os.environ,
            "YANDEX_MARKET_API_KEY": fake.api_key,
            "YANDEX_MARKET_BASE_URL": fake.url,
            "YANDEX_MARKET_BUSINESS_ID": str(business),
            "YANDEX_MARKET_CHAT_ID": str(chat.chat_id),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            **services,
        }
        if snippet.app:
            script = tmp_path / "snippet.py"
            script.write_text(snippet.code, encoding="utf-8")
            args = ["-c", _APP_CHECK, str(script)]
        elif snippet.pytest:
            (tmp_path / "test_snippet.py").write_text(snippet.code, encoding="utf-8")
            # The user's own suite: strict mode, no config of ours.
            args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=strict"]
            args += ["-W", "error::pytest.PytestUnraisableExceptionWarning", "test_snippet.py"]
        else:
            args = ["-c", snippet.code]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), SNIPPET_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"{snippet.id} did not finish in {SNIPPET_TIMEOUT:.0f} s")
    assert proc.returncode == 0, (
        f"{snippet.id} exited {proc.returncode}\n--- code ---\n{snippet.code}"
        f"\n--- stdout ---\n{out.decode(errors='replace')}"
        f"\n--- stderr ---\n{err.decode(errors='replace')}"
    )


def test_the_contributing_commands_for_one_test_run_it() -> None:
    """CONTRIBUTING's "one file or one test, fast" commands run their tests and pass."""
    readme = (ROOT / "CONTRIBUTING.md").read_text("utf-8")
    block = readme.split("- One file or one test, fast", 1)[1].split("```sh", 1)[1]
    commands = [line.split() for line in block.split("```", 1)[0].splitlines() if line.strip()]
    assert len(commands) == 2 and all(c[0] == ".venv/bin/pytest" for c in commands)
    unmeasured = unmeasured_env()  # these tests run in the suite anyway: no second measure
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *command[1:], "-q", "-p", "no:cacheprovider"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env=unmeasured,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert re.search(r"^\d+ passed", done.stdout.splitlines()[-1]), done.stdout[-500:]
