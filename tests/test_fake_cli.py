"""``python -m yamarket_chats.testing``, ``yamarket-chats fake-server`` and the pytest fixtures."""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from yamarket_chats.cli.parser import build_parser
from yamarket_chats.testing import FakeMarketConfig, FakeServer
from yamarket_chats.testing.__main__ import build_parser as build_fake_parser

SIGTERM_EXIT = 128 + signal.SIGTERM  # 143, as every yamarket-chats command


def test_module_runs_standalone() -> None:
    command = [sys.executable, "-m", "yamarket_chats.testing", "--port", "0"]
    command += ["--businesses", "7,8", "--chats", "2", "--messages", "5", "--no-limits"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
    finally:
        process.terminate()
        code = process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert code == SIGTERM_EXIT
    assert lines[0].startswith("Fake Yandex Market chats API at http://127.0.0.1:")
    assert lines[1].strip() == "Businesses: 7, 8"
    assert lines[2].strip() == "Api-Key: ACMA:fake-api-key"


async def _serves_https(ca: Path, *command: str) -> None:
    """Run `command` with ``--tls-ca ca``; read 2 chats over HTTPS; SIGTERM ends it: 143."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, "--port", "0", "--chats", "2",
        "--keep-alive", "--tls-ca", str(ca),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 30)  # ready
        url = first.decode().split(" at ", 1)[1].strip()
        assert url.startswith("https://127.0.0.1:")
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"{url}/v2/businesses/1001/chats",
                json={},
                headers={"Api-Key": "ACMA:fake-api-key"},
            ) as response,
        ):
            assert response.status == 200
            assert len((await response.json())["result"]["chats"]) == 2
    finally:
        if process.returncode is None:
            process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == SIGTERM_EXIT, err.decode()
    assert "Traceback" not in err.decode()


async def test_module_serves_https_with_a_throwaway_ca(tmp_path: Path) -> None:
    await _serves_https(tmp_path / "ca.pem", "-m", "yamarket_chats.testing")


async def test_the_fake_server_command_takes_tls_ca_and_exits_143_on_sigterm(
    tmp_path: Path,
) -> None:
    await _serves_https(tmp_path / "ca.pem", "-m", "yamarket_chats.cli", "fake-server")


def _options(parser: argparse.ArgumentParser) -> list[tuple[Any, ...]]:
    """Every option of `parser` (but -h) as what defines it, in order."""
    return [
        (a.option_strings, a.dest, a.default, a.type, a.nargs, a.const, a.metavar, a.help)
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction)
    ]


def test_the_fake_server_command_takes_exactly_the_modules_options() -> None:
    """One definition of the fake's options for both commands: they cannot drift apart."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fake_server = commands.choices["fake-server"]
    assert _options(fake_server) == _options(build_fake_parser())
    assert {"--tls-ca", "--port", "--businesses"} <= {
        option for a in fake_server._actions for option in a.option_strings
    }


def test_default_config_fixture(yamarket_fake_config: FakeMarketConfig) -> None:
    assert yamarket_fake_config == FakeMarketConfig()


async def test_fixture_serves(yamarket_fake: FakeServer) -> None:
    assert yamarket_fake.url.startswith("http://127.0.0.1:") and not yamarket_fake.url.endswith("/")
    url = f"{yamarket_fake.url}/v2/businesses/1001/chats"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, json={}, headers={"Authorization": f"Bearer {yamarket_fake.oauth_token}"}
        ) as response,
    ):
        assert response.status == 200
        assert len((await response.json())["result"]["chats"]) == 10
    assert len(yamarket_fake.journal) == 1
