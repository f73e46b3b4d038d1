"""`ChatsClient()` from the environment (the YANDEX_MARKET_* variables), and its User-Agent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import yamarket_chats
from tests.conftest import BUSINESS
from yamarket_chats import ChatsClient, InvalidRequestError
from yamarket_chats.testing import FakeServer


async def test_a_client_made_from_the_environment_alone_reads_chats(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YANDEX_MARKET_API_KEY", fake.api_key)
    monkeypatch.setenv("YANDEX_MARKET_BASE_URL", fake.url)
    async with ChatsClient() as client:
        page = await client.get_chats(BUSINESS)
    assert page.chats  # the fake answers 401 to any other key


async def test_the_oauth_token_is_read_when_there_is_no_key(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YANDEX_MARKET_OAUTH_TOKEN", fake.oauth_token)
    monkeypatch.setenv("YANDEX_MARKET_BASE_URL", fake.url)
    async with ChatsClient() as client:
        await client.get_chats(BUSINESS)
        assert "oauth_token=***" in repr(client)


async def test_arguments_win_over_the_environment(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YANDEX_MARKET_API_KEY", "ignored-key")
    monkeypatch.setenv("YANDEX_MARKET_BASE_URL", "http://127.0.0.1:9")
    async with ChatsClient(api_key=fake.api_key, base_url=fake.url) as client:
        await client.get_chats(BUSINESS)
    assert [entry.status for entry in fake.journal] == [200]


def test_no_key_anywhere_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YANDEX_MARKET_API_KEY", "")  # empty: unset
    with pytest.raises(InvalidRequestError, match="YANDEX_MARKET_API_KEY"):
        ChatsClient()


def test_a_bad_variable_is_named_and_its_value_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YANDEX_MARKET_API_KEY", "secret-part\n")
    with pytest.raises(InvalidRequestError, match="YANDEX_MARKET_API_KEY") as error:
        ChatsClient()
    assert "secret-part" not in str(error.value)
    monkeypatch.setenv("YANDEX_MARKET_API_KEY", "good-key")
    monkeypatch.setenv("YANDEX_MARKET_BASE_URL", "ftp://example.com")
    with pytest.raises(InvalidRequestError, match="YANDEX_MARKET_BASE_URL: base_url must be"):
        ChatsClient()


def test_without_a_base_url_the_client_talks_to_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YANDEX_MARKET_API_KEY", "good-key")
    assert "https://api.partner.market.yandex.ru" in repr(ChatsClient())


async def test_requests_carry_the_librarys_user_agent(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    import platform

    import aiohttp

    client = make_client()
    await client.get_chats(BUSINESS)
    await client.send_message_to_chat(BUSINESS, fake.market.chats(BUSINESS)[0].chat_id, "hi")
    expected = (
        f"yamarket-chats/{yamarket_chats.__version__} aiohttp/{aiohttp.__version__}"
        f" python/{platform.python_version()}"
    )
    assert [entry.user_agent for entry in fake.journal] == [expected, expected]


async def test_a_callers_session_keeps_its_own_user_agent(fake: FakeServer) -> None:
    import aiohttp

    chat = fake.market.chats(BUSINESS)[0].chat_id
    async with (
        aiohttp.ClientSession(headers={"User-Agent": "my-shop/2.0"}) as session,
        ChatsClient(fake.api_key, base_url=fake.url, session=session) as client,
    ):
        await client.get_chats(BUSINESS)  # on the caller's session
        await client.send_message_to_chat(BUSINESS, chat, "hi")  # on a copy of it
    assert [entry.user_agent for entry in fake.journal] == ["my-shop/2.0", "my-shop/2.0"]
    async with (
        aiohttp.ClientSession() as session,  # no User-Agent of its own: ours
        ChatsClient(fake.api_key, base_url=fake.url, session=session) as client,
    ):
        await client.get_chats(BUSINESS)
    assert str(fake.journal.entries()[-1].user_agent).startswith("yamarket-chats/")
