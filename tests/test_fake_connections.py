"""The fake counts TCP connections, names each request's connection, keeps
connections alive on request, can close them like a real server would, and
serves HTTPS with a throwaway certificate."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from yamarket_chats import ChatsClient
from yamarket_chats.testing import (
    FakeMarketConfig,
    SelfSignedTLS,
    run_fake_server,
    self_signed_tls,
)
from yamarket_chats.testing.__main__ import add_arguments, config_from_args
from yamarket_chats.testing.__main__ import main as fake_main

from .fake_helpers import BUSINESS, Api

SMALL: dict[str, Any] = {"chats_per_business": 3, "messages_per_chat": 5}
KEEP_ALIVE = FakeMarketConfig(keep_alive=True, **SMALL)


async def _get_chats(api: Api, times: int) -> None:
    for _ in range(times):
        await api.ok("POST", "/chats", json={})


async def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` until true; fail after ``timeout`` seconds."""
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_without_keep_alive_every_request_has_its_own_connection() -> None:
    async with run_fake_server(FakeMarketConfig(**SMALL)) as fake:
        async with aiohttp.ClientSession() as session:
            api = Api(fake, session)
            for _ in range(3):
                status, _, response = await api.call("POST", "/chats", json={})
                assert status == 200
                assert response.headers["Connection"].lower() == "close"
        assert fake.connections == 3
        assert [e.connection for e in fake.journal] == [1, 2, 3]
        assert not any(e.reused for e in fake.journal)


async def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    async with run_fake_server(KEEP_ALIVE) as fake:
        async with aiohttp.ClientSession() as session:
            api = Api(fake, session)
            await _get_chats(api, 10)
            assert fake.open_connections == 1
        assert fake.connections == 1
        assert {e.connection for e in fake.journal} == {1}
        await _wait_for(lambda: fake.open_connections == 0)


async def test_connection_ids_tell_sessions_apart() -> None:
    async with run_fake_server(KEEP_ALIVE) as fake:
        async with aiohttp.ClientSession() as first, aiohttp.ClientSession() as second:
            await _get_chats(Api(fake, first), 2)
            await _get_chats(Api(fake, second), 2)
            await _get_chats(Api(fake, first), 1)
        assert [e.connection for e in fake.journal] == [1, 1, 2, 2, 1]
        assert [e.reused for e in fake.journal] == [False, True, False, True, True]
        assert fake.connections == 2


async def test_client_closing_its_connection_is_obeyed() -> None:
    async with run_fake_server(KEEP_ALIVE) as fake:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            await _get_chats(Api(fake, session), 3)
        assert fake.connections == 3
        assert [e.connection for e in fake.journal] == [1, 2, 3]


async def test_idle_kept_alive_connection_is_closed_after_keep_alive_timeout() -> None:
    config = FakeMarketConfig(keep_alive=True, keep_alive_timeout=0.2, **SMALL)
    async with run_fake_server(config) as fake:
        async with aiohttp.ClientSession() as session:
            api = Api(fake, session)
            await _get_chats(api, 2)
            assert fake.open_connections == 1
            await _wait_for(lambda: fake.open_connections == 0)
            await _get_chats(api, 1)
        assert [e.connection for e in fake.journal] == [1, 1, 2]
        assert fake.connections == 2


async def test_max_requests_per_connection_drops_the_next_request_on_it() -> None:
    config = FakeMarketConfig(keep_alive=True, max_requests_per_connection=2, **SMALL)
    async with run_fake_server(config) as fake:
        url = f"{fake.url}/v2/businesses/{BUSINESS}/chats"
        headers = {"Api-Key": fake.api_key}
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.post(url, json={}, headers=headers) as response:
                    assert response.status == 200
                    assert response.headers.get("Connection", "").lower() != "close"
            # POST is not idempotent: aiohttp does not retry it on a stale connection.
            with pytest.raises(aiohttp.ServerDisconnectedError):
                async with session.post(url, json={}, headers=headers) as response:
                    await response.read()
            async with session.post(url, json={}, headers=headers) as response:
                assert response.status == 200
        entries = list(fake.journal)
        assert [e.connection for e in entries] == [1, 1, 1, 2]
        assert [e.status for e in entries] == [200, 200, None, 200]
        assert entries[2].fault == "stale_connection"
        assert fake.connections == 2


@pytest.mark.parametrize(
    "config",
    [
        {"keep_alive_timeout": 0},
        {"keep_alive": True, "keep_alive_timeout": -1.0},
        {"keep_alive": True, "max_requests_per_connection": 0},
        {"keep_alive_timeout": 1.0},
        {"max_requests_per_connection": 3},
    ],
)
def test_bad_connection_options_are_refused(config: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"keep_alive|max_requests"):
        FakeMarketConfig(**config)  # type: ignore[arg-type]


# -- TLS -----------------------------------------------------------------------------


# trustme makes the certificates: it comes with the dev extra (make test installs it).


async def test_fake_serves_https_with_a_throwaway_certificate() -> None:
    tls = self_signed_tls()
    async with run_fake_server(KEEP_ALIVE, ssl_context=tls.server_context) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        connector = aiohttp.TCPConnector(ssl=tls.client_context)
        async with aiohttp.ClientSession(connector=connector) as session:
            api = Api(fake, session)
            await _get_chats(api, 3)
            history = await api.history(fake.market.chats(BUSINESS)[0].chat_id)
            assert history[0]["messageId"] > 0
        assert fake.connections == 1
        assert {e.connection for e in fake.journal} == {1}


async def test_https_fake_is_not_trusted_without_its_ca() -> None:
    tls = self_signed_tls()
    async with run_fake_server(KEEP_ALIVE, ssl_context=tls.server_context) as fake:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await Api(fake, session).call("POST", "/chats", json={})
        assert len(fake.journal) == 0
        assert fake.connections == 1


async def test_https_by_name_localhost() -> None:
    tls = self_signed_tls()
    async with run_fake_server(KEEP_ALIVE, ssl_context=tls.server_context) as fake:
        url = fake.url.replace("127.0.0.1", "localhost")
        connector = aiohttp.TCPConnector(ssl=tls.client_context)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"{url}/v2/businesses/{BUSINESS}/chats",
                json={},
                headers={"Api-Key": fake.api_key},
            ) as response,
        ):
            assert response.status == 200


async def test_library_client_over_https() -> None:
    tls = self_signed_tls()
    async with run_fake_server(KEEP_ALIVE, ssl_context=tls.server_context) as fake:
        connector = aiohttp.TCPConnector(ssl=tls.client_context)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session)
            page = await client.get_chats(BUSINESS)
            assert len(page.chats) == 3
            await client.close()


def test_tls_pair_is_fresh_and_repr_is_short() -> None:
    first, second = self_signed_tls(), self_signed_tls()
    assert first.ca_pem != second.ca_pem
    assert "BEGIN" not in repr(first)
    assert isinstance(first.server_context, ssl.SSLContext)
    assert isinstance(first, SelfSignedTLS)
    with pytest.raises(ValueError, match="tool"):
        self_signed_tls(tool="gnutls")
    with pytest.raises(ValueError, match="tool"):  # the openssl maker is gone: trustme makes them
        self_signed_tls(tool="openssl")
    assert isinstance(self_signed_tls(tool="cryptography"), SelfSignedTLS)
    with pytest.raises(ValueError, match="hosts"):
        self_signed_tls(())


def test_command_line_options_set_the_connection_behaviour() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--keep-alive", "--keep-alive-timeout", "0.5", "--max-requests-per-connection", "3"]
    config = config_from_args(parser.parse_args(argv))
    assert (config.keep_alive, config.keep_alive_timeout) == (True, 0.5)
    assert config.max_requests_per_connection == 3
    with pytest.raises(ValueError, match="keep_alive=True"):
        config_from_args(parser.parse_args(["--keep-alive-timeout", "0.5"]))


async def test_the_certificates_pass_the_strict_x509_checks() -> None:
    # Python 3.13+ sets these flags in every default context; set them here on any version.
    tls = self_signed_tls()
    context = tls.client_context
    context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    async with run_fake_server(KEEP_ALIVE, ssl_context=tls.server_context) as fake:
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(connector=connector) as session:
            await _get_chats(Api(fake, session), 1)
        assert len(fake.journal) == 1


def test_without_any_maker_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)  # import trustme: ImportError
    with pytest.raises(RuntimeError, match="pip install trustme"):
        self_signed_tls()
    # The fake's --tls-ca says it too, as a usage error rather than a traceback.
    with pytest.raises(SystemExit) as exited:
        fake_main(["--port", "0", "--tls-ca", str(tmp_path / "ca.pem")])
    assert exited.value.code == 2
    assert "--tls-ca: throwaway TLS certificates need trustme: pip install trustme" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "ca.pem").exists()
