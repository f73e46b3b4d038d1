"""``python -m yamarket_chats.testing`` and the pytest fixtures."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp

from yamarket_chats.testing import FakeMarketConfig, FakeServer


def test_module_runs_standalone() -> None:
    command = [sys.executable, "-m", "yamarket_chats.testing", "--port", "0"]
    command += ["--businesses", "7,8", "--chats", "2", "--messages", "5", "--no-limits"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert lines[0].startswith("Fake Yandex Market chats API at http://127.0.0.1:")
    assert lines[1].strip() == "Businesses: 7, 8"
    assert lines[2].strip() == "Api-Key: ACMA:fake-api-key"


async def test_module_serves_https_with_a_throwaway_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "yamarket_chats.testing", "--port", "0", "--chats", "2"),
        *("--keep-alive", "--tls-ca", str(ca)),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 30)
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
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


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
