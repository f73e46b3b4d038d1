"""The fake's in-memory state used directly, and its scale (lazy messages)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from tests.fake_helpers import BUSINESS, connect
from yamarket_chats.testing import FakeMarket, FakeMarketConfig, run_fake_server


def snapshot(market: FakeMarket) -> list[object]:
    return [
        (chat.info(), list(market.messages(BUSINESS, chat.chat_id)))
        for chat in market.chats(BUSINESS)
    ]


def test_seeded_state_is_deterministic() -> None:
    config = FakeMarketConfig(chats_per_business=5, messages_per_chat=20, seed=7)
    assert snapshot(FakeMarket(config)) == snapshot(FakeMarket(config))
    other = FakeMarket(FakeMarketConfig(chats_per_business=5, messages_per_chat=20, seed=8))
    assert snapshot(other) != snapshot(FakeMarket(config))


def test_ids_are_positive_unique_and_ascending() -> None:
    market = FakeMarket(FakeMarketConfig(businesses=(1, 2), chats_per_business=4))
    chats = market.chats(1) + market.chats(2)
    chat_ids = [c.chat_id for c in chats]
    assert chat_ids == sorted(set(chat_ids)) and chat_ids[0] >= 1
    added = market.add_message(1, chat_ids[0], "late")
    ids = [m.message_id for c in chats for m in market.messages(c.business_id, c.chat_id)]
    assert len(ids) == len(set(ids)) == 8 * 50 + 1
    first_chat = [m.message_id for m in market.messages(1, chat_ids[0])]
    assert first_chat == sorted(first_chat) and first_chat[-1] == added
    new_chat = market.add_chat(2, messages=3, context_type="DIRECT")
    assert new_chat > chat_ids[-1]
    assert market.get_chat(2, new_chat).order_id is None


def test_lookups() -> None:
    market = FakeMarket()
    chat = market.chats(BUSINESS)[0]
    messages = list(market.messages(BUSINESS, chat.chat_id))
    assert market.get_message(BUSINESS, chat.chat_id, messages[9].message_id) == messages[9]
    from_id = list(market.messages(BUSINESS, chat.chat_id, from_id=messages[45].message_id))
    assert from_id == messages[45:]
    with pytest.raises(KeyError):
        market.get_chat(9999, chat.chat_id)
    with pytest.raises(KeyError):
        market.get_message(BUSINESS, chat.chat_id, 1)
    file_message = next(m for m in messages if m.payload)
    item = file_message.payload[0]  # type: ignore[index]
    content = market.file(chat.chat_id, file_message.message_id, item.name)
    assert content is not None and len(content) == item.size


def test_add_message_with_payload_and_sender() -> None:
    market = FakeMarket()
    chat_id = market.chats(BUSINESS)[1].chat_id
    message_id = market.add_message(
        BUSINESS, chat_id, sender="SUPPORT", payload=[("scan.pdf", b"%PDF")]
    )
    message = market.get_message(BUSINESS, chat_id, message_id)
    assert message.sender == "SUPPORT" and message.message is None
    assert message.payload is not None and message.payload[0].size == 4
    assert market.file(chat_id, message_id, "scan.pdf") == b"%PDF"
    assert market.get_chat(BUSINESS, chat_id).updated_at == message.created_at
    with pytest.raises(ValueError):
        market.add_message(BUSINESS, chat_id)


def test_a_million_messages_cost_no_memory() -> None:
    market = FakeMarket()
    tracemalloc.start()
    started = time.perf_counter()
    chat_id = market.add_chat(BUSINESS, messages=1_000_000)
    chat = market.get_chat(BUSINESS, chat_id)
    last = market.message_at(chat, 999_999)
    assert market.get_message(BUSINESS, chat_id, last.message_id) == last
    assert chat.position(last.message_id) == 999_999
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000
    assert time.perf_counter() - started < 0.5
    assert chat.message_count == 1_000_000
    assert chat.updated_at == last.created_at


async def test_paging_deep_into_a_huge_chat() -> None:
    config = FakeMarketConfig(chats_per_business=1, messages_per_chat=10, limits_enabled=False)
    async with run_fake_server(config) as server, connect(server) as api:
        chat_id = server.market.add_chat(BUSINESS, messages=1_000_000)
        first_id = server.market.get_chat(BUSINESS, chat_id).first_message_id
        body = {"messageIdFrom": first_id + 999_850}
        messages = await api.history(chat_id, json=body, params={"limit": 100})
        assert [m["messageId"] for m in messages] == list(
            range(first_id + 999_850, first_id + 1_000_000)
        )


def test_orders_and_returns_the_market_holds() -> None:
    config = FakeMarketConfig(businesses=(1, 2), chats_per_business=5, orders=[42], returns=(43,))
    assert config.orders == (42,)  # a list given is kept as a tuple
    market = FakeMarket(config)
    for business in (1, 2):  # the declared ids, for every business
        assert market.holds(business, "ORDER", 42) and market.holds(business, "RETURN", 43)
        assert not market.holds(business, "RETURN", 42) and not market.holds(business, "ORDER", 43)
    for chat in market.chats(1):  # and each chat's own
        if chat.order_id is not None:
            assert market.holds(1, "ORDER", chat.order_id)
            assert not market.holds(2, "ORDER", chat.order_id)
        if chat.return_id is not None:
            assert market.holds(1, "RETURN", chat.return_id)
    market.add_chat(2, context_type="RETURN", order_id=7, return_id=8)
    assert market.holds(2, "ORDER", 7) and market.holds(2, "RETURN", 8)
    assert not market.holds(3, "ORDER", 42)  # no such business


@pytest.mark.parametrize("ids", [(0,), (-1,), (2**63,), (True,), ("5",), (1.0,)])
def test_declared_orders_and_returns_are_ids(ids: tuple[object, ...]) -> None:
    for name in ("orders", "returns"):
        with pytest.raises(ValueError, match=f"^{name} must hold integer ids"):
            FakeMarketConfig(**{name: ids})  # type: ignore[arg-type]
