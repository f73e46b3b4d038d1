"""The fake Market's in-memory state: businesses, chats, messages, files.

Seeded messages are never stored: message ``i`` of a chat is computed from
``(seed, chat id, i)`` on demand, so a chat can hold millions of them. Only
messages added later (``add_message``, sends) are kept in memory.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import get_args
from urllib.parse import quote

from ._config import FakeMarketConfig
from ._wire import (
    MSK,
    ChatInfo,
    ChatStatus,
    Customer,
    FakeMessage,
    FakePayload,
    FullContext,
)

STATUSES: tuple[str, ...] = get_args(ChatStatus)
_CONTEXT_CYCLE = ("ORDER", "RETURN", "ORDER", "DIRECT", "ORDER")
# As the live API does: whose answer a chat waits for after a message.
_STATUS_AFTER = {"PARTNER": "WAITING_FOR_CUSTOMER", "CUSTOMER": "WAITING_FOR_PARTNER"}
_SENDERS = ("CUSTOMER", "PARTNER", "CUSTOMER", "PARTNER", "MARKET", "SUPPORT", "CUSTOMER")
_PHRASES = (
    "Здравствуйте! Когда будет доставка?",
    "Добрый день, заказ передан в службу доставки.",
    "Можно поменять размер?",
    "Спасибо, всё получил.",
    "Товар пришёл в повреждённой упаковке, что делать?",
    "Пожалуйста, приложите фото товара.",
    "Hello, is the item still in stock?",
)
_NAMES = ("Анна", "Иван", "Мария", "Пётр", "Ольга", "Дмитрий", "Елена", "Сергей")
_SEEDED_EPOCH = 1735678800  # 2025-01-01T00:00:00+03:00
_MESSAGE_STEP = 10  # seconds between seeded messages
_FIRST_CHAT_ID = 10_000_001
_FIRST_MESSAGE_ID = 100_000_001
_FIRST_ORDER_ID = 50_000_001
_FIRST_RETURN_ID = 7_000_001
# Seeded messages kept ready for pages read again (~0.3 KB each).
_PAGE_CACHE_MESSAGES = 200_000


def _mix(*parts: int) -> int:
    """A cheap deterministic 32-bit hash (not ``hash()``: that is salted for str)."""
    h = 0x811C9DC5
    for part in parts:
        h = ((h ^ (part & 0xFFFFFFFF)) * 0x01000193) & 0xFFFFFFFF
        h ^= h >> 13
    return h


@dataclasses.dataclass(eq=False)
class FakeChat:
    """One chat of the fake, with its message store.

    ``context_type`` is ORDER, RETURN or DIRECT; ``seeded`` is the number of
    generated messages (ids ``first_message_id .. first_message_id + seeded - 1``);
    ``appended`` the messages added afterwards, ids ascending.
    """

    chat_id: int
    business_id: int
    type: str
    status: str
    context_type: str
    created_at: datetime
    updated_at: datetime
    customer_name: str
    customer_public_id: str
    campaign_id: int | None = None
    order_id: int | None = None
    return_id: int | None = None
    seeded: int = 0
    first_message_id: int = 0
    appended: list[FakeMessage] = dataclasses.field(default_factory=list)
    _appended_ids: list[int] = dataclasses.field(default_factory=list, repr=False)
    _salt: int = dataclasses.field(default=0, repr=False)
    _created_ts: int = dataclasses.field(default=0, repr=False)

    @property
    def message_count(self) -> int:
        """How many messages the chat holds."""
        return self.seeded + len(self.appended)

    def context(self) -> FullContext:
        """The chat's ``context`` object as the API returns it."""
        return FullContext(
            type=self.context_type,
            customer=Customer(name=self.customer_name, public_id=self.customer_public_id),
            campaign_id=self.campaign_id,
            order_id=self.order_id,
            return_id=self.return_id,
        )

    def info(self) -> ChatInfo:
        """The chat as ``getChat`` returns it."""
        return ChatInfo(
            chat_id=self.chat_id,
            order_id=self.order_id,
            context=self.context(),
            type=self.type,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def position(self, message_id: int) -> int:
        """Index of the first message whose id is >= ``message_id``."""
        offset = message_id - self.first_message_id
        if offset < self.seeded:
            return max(offset, 0)
        return self.seeded + bisect.bisect_left(self._appended_ids, message_id)


class FakeMarket:
    """In-memory state of the fake API, deterministic from ``config.seed``.

    Tests may use it directly: inspect chats and messages, or add some while
    a client is paging (``add_chat``, ``add_message``).
    """

    def __init__(self, config: FakeMarketConfig | None = None, *, base_url: str = "") -> None:
        self.config = config or FakeMarketConfig()
        #: Prefix of file payload URLs (set by the server once it is listening).
        self.base_url = base_url
        self._seed = self.config.seed
        self._chats: dict[int, FakeChat] = {}
        self._by_business: dict[int, list[FakeChat]] = {b: [] for b in self.config.businesses}
        self._files: dict[tuple[int, int, str], bytes] = {}
        self._next_chat_id = _FIRST_CHAT_ID
        self._next_message_id = _FIRST_MESSAGE_ID
        self._next_order_id = _FIRST_ORDER_ID
        self._next_return_id = _FIRST_RETURN_ID
        self._rng = random.Random(self._seed)
        # What ``createChat`` may name, per business: ("ORDER" or "RETURN", id).
        self._contexts: dict[int, set[tuple[str, int]]] = {
            b: {("ORDER", i) for i in self.config.orders}
            | {("RETURN", i) for i in self.config.returns}
            for b in self.config.businesses
        }
        self._page_cache: dict[tuple[int, int, int, str], tuple[FakeMessage, ...]] = {}
        self._page_cache_size = 0
        #: Called as ``listener(event, chat, message)`` after a chat is added
        #: (event "chat_created", message None) or a message is appended
        #: ("message_sent"); seeding happens before anyone can listen.
        self.listeners: list[Callable[[str, FakeChat, FakeMessage | None], None]] = []
        for business_id in self.config.businesses:
            for k in range(self.config.chats_per_business):
                self._seed_chat(business_id, k)

    # -- reading ---------------------------------------------------------------

    @property
    def businesses(self) -> tuple[int, ...]:
        """The business ids the fake knows."""
        return tuple(self._by_business)

    def chats(self, business_id: int) -> list[FakeChat]:
        """The chats of a business, ascending chat id (a copy of the list)."""
        return list(self._by_business[business_id])

    def holds(self, business_id: int, kind: str, context_id: int) -> bool:
        """Whether a business has the order (``kind`` "ORDER") or return ("RETURN") of an id.

        Its chats' orders and returns (a return's order too), and the config's
        ``orders`` and ``returns``.
        """
        return (kind, context_id) in self._contexts.get(business_id, ())

    def get_chat(self, business_id: int, chat_id: int) -> FakeChat:
        """A chat of a business; ``KeyError`` if there is none."""
        chat = self._chats.get(chat_id)
        if chat is None or chat.business_id != business_id:
            raise KeyError(chat_id)
        return chat

    def message_at(self, chat: FakeChat, index: int) -> FakeMessage:
        """Message number ``index`` (0-based, ascending id) of ``chat``."""
        if index >= chat.seeded:
            return chat.appended[index - chat.seeded]
        return self._seeded_message(chat, index)

    def page(self, chat: FakeChat, start: int, stop: int) -> list[FakeMessage]:
        """Messages ``start .. stop - 1`` (0-based, ascending id) of ``chat``."""
        seeded_stop = min(stop, chat.seeded)
        page = list(self._seeded_page(chat, start, seeded_stop))
        if stop > chat.seeded:
            page += chat.appended[max(start, chat.seeded) - chat.seeded : stop - chat.seeded]
        return page

    def messages(
        self, business_id: int, chat_id: int, *, from_id: int | None = None
    ) -> Iterator[FakeMessage]:
        """Iterate a chat's messages in ascending id, from ``from_id`` on if given."""
        chat = self.get_chat(business_id, chat_id)
        index = chat.position(from_id) if from_id is not None else 0
        while index < chat.message_count:
            yield self.message_at(chat, index)
            index += 1

    def message_count(self, business_id: int, chat_id: int) -> int:
        """How many messages a chat holds."""
        return self.get_chat(business_id, chat_id).message_count

    def get_message(self, business_id: int, chat_id: int, message_id: int) -> FakeMessage:
        """One message of a chat; ``KeyError`` if there is none."""
        chat = self.get_chat(business_id, chat_id)
        index = chat.position(message_id)
        if index < chat.message_count:
            message = self.message_at(chat, index)
            if message.message_id == message_id:
                return message
        raise KeyError(message_id)

    def file(self, chat_id: int, message_id: int, name: str) -> bytes | None:
        """Content of a payload file, or ``None``."""
        stored = self._files.get((chat_id, message_id, name))
        if stored is not None:
            return stored
        chat = self._chats.get(chat_id)
        if chat is None:
            return None
        try:
            message = self.get_message(chat.business_id, chat_id, message_id)
        except KeyError:
            return None
        for item in message.payload or ():
            if item.name == name:
                pattern = f"fake file {chat_id}/{message_id}\n".encode()
                return (pattern * (item.size // len(pattern) + 1))[: item.size]
        return None

    # -- writing ---------------------------------------------------------------

    def add_chat(
        self,
        business_id: int,
        *,
        messages: int = 0,
        context_type: str = "ORDER",
        type: str = "CHAT",
        status: str = "NEW",
        order_id: int | None = None,
        return_id: int | None = None,
    ) -> int:
        """Create a chat with ``messages`` generated messages; return its id."""
        if business_id not in self._by_business:
            raise KeyError(business_id)
        chat_id = self._next_chat_id
        self._next_chat_id += 1
        if context_type in ("ORDER", "RETURN") and order_id is None:
            order_id = self._take_order_id()
        if context_type == "RETURN" and return_id is None:
            return_id = self._next_return_id
            self._next_return_id += 1
        h = _mix(self._seed, chat_id)
        created = datetime.fromtimestamp(_SEEDED_EPOCH + (chat_id - _FIRST_CHAT_ID) * 3600, MSK)
        chat = FakeChat(
            chat_id=chat_id,
            business_id=business_id,
            type=type,
            status=status,
            context_type=context_type,
            created_at=created,
            updated_at=created,
            customer_name=_NAMES[h % len(_NAMES)],
            customer_public_id=f"fake-{h:08x}",
            campaign_id=None if context_type == "DIRECT" else 20_000_000 + business_id,
            order_id=order_id if context_type != "DIRECT" else None,
            return_id=return_id if context_type == "RETURN" else None,
            seeded=messages,
            first_message_id=self._next_message_id,
        )
        chat._salt = _mix(self._seed, chat_id, 1)
        chat._created_ts = int(created.timestamp())
        self._next_message_id += messages
        if messages:
            chat.updated_at = self._seeded_message(chat, messages - 1).created_at
        self._chats[chat_id] = chat
        self._by_business[business_id].append(chat)
        held = self._contexts[business_id]
        if chat.order_id is not None:
            held.add(("ORDER", chat.order_id))
        if chat.return_id is not None:
            held.add(("RETURN", chat.return_id))
        for listener in self.listeners:
            listener("chat_created", chat, None)
        return chat_id

    def add_message(
        self,
        business_id: int,
        chat_id: int,
        text: str | None = None,
        *,
        sender: str = "CUSTOMER",
        payload: Sequence[tuple[str, bytes]] | None = None,
    ) -> int:
        """Append a message (text and/or files as ``(name, content)``); return its id.

        As the live API does, a ``PARTNER`` message moves a chat that is new or
        waits for either side to ``WAITING_FOR_CUSTOMER``, and a ``CUSTOMER``
        one to ``WAITING_FOR_PARTNER`` (a dispute's or a finished chat's status
        stays).
        """
        chat = self.get_chat(business_id, chat_id)
        if text is None and not payload:
            raise ValueError("a message needs text or a payload")
        message_id = self._next_message_id
        self._next_message_id += 1
        files = None
        if payload:
            files = []
            for name, content in payload:
                self._files[(chat_id, message_id, name)] = content
                url = f"{self.base_url}/files/{chat_id}/{message_id}/{quote(name)}"
                files.append(FakePayload(name=name, url=url, size=len(content)))
        now = datetime.now(MSK).replace(microsecond=0)
        created = max(now, chat.updated_at)
        chat.appended.append(
            FakeMessage(
                message_id=message_id,
                created_at=created,
                sender=sender,
                message=text,
                payload=files,
            )
        )
        chat._appended_ids.append(message_id)
        chat.updated_at = created
        if chat.status in _STATUS_AFTER.values() or chat.status == "NEW":  # not a dispute's
            chat.status = _STATUS_AFTER.get(sender, chat.status)
        for listener in self.listeners:
            listener("message_sent", chat, chat.appended[-1])
        return message_id

    def find_or_create_chat(self, business_id: int, kind: str, context_id: int) -> int:
        """``createChat``: the chat of an order/return context, created if missing.

        Whether the business `holds` that order or return is the caller's check.
        """
        for chat in self._by_business[business_id]:
            if kind == "ORDER" and chat.context_type == "ORDER" and chat.order_id == context_id:
                return chat.chat_id
            if kind == "RETURN" and chat.context_type == "RETURN" and chat.return_id == context_id:
                return chat.chat_id
        if kind == "ORDER":
            return self.add_chat(business_id, context_type="ORDER", order_id=context_id)
        return self.add_chat(business_id, context_type="RETURN", return_id=context_id)

    # -- generation ------------------------------------------------------------

    def _take_order_id(self) -> int:
        self._next_order_id += 1 + self._rng.randrange(5)
        return self._next_order_id

    def _seed_chat(self, business_id: int, k: int) -> None:
        context_type = _CONTEXT_CYCLE[k % len(_CONTEXT_CYCLE)]
        self.add_chat(
            business_id,
            messages=self.config.messages_per_chat,
            context_type=context_type,
            type="ARBITRAGE" if k % 7 == 3 else "CHAT",
            status=STATUSES[k % len(STATUSES)],
        )

    def _seeded_page(self, chat: FakeChat, start: int, stop: int) -> tuple[FakeMessage, ...]:
        """Seeded messages ``start .. stop - 1``, generated once and then cached.

        Seeded messages never change (they depend only on the seed, the chat
        and ``base_url``), so pages read again (benchmark rounds, tests paging
        twice) skip the generation, which is most of a history request's cost.
        The cache holds at most ``_PAGE_CACHE_MESSAGES`` messages, oldest out first.
        """
        if start >= stop:
            return ()
        key = (chat.chat_id, start, stop, self.base_url)
        cache = self._page_cache
        page = cache.get(key)
        if page is None:
            page = tuple(self._seeded_message(chat, i) for i in range(start, stop))
            cache[key] = page
            self._page_cache_size += len(page)
            while self._page_cache_size > _PAGE_CACHE_MESSAGES:
                evicted = cache.pop(next(iter(cache)))
                self._page_cache_size -= len(evicted)
        return page

    def _seeded_message(self, chat: FakeChat, index: int) -> FakeMessage:
        # Hot path (history pages): keep it to a few integer operations.
        message_id = chat.first_message_id + index
        h = (index * 0x9E3779B1 + chat._salt) & 0xFFFFFFFF
        h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
        h ^= h >> 12
        created = datetime.fromtimestamp(
            chat._created_ts + index * _MESSAGE_STEP + h % _MESSAGE_STEP, MSK
        )
        sender = _SENDERS[h % len(_SENDERS)]
        if h % 11 == 0:
            name = f"photo-{message_id}.jpg"
            url = f"{self.base_url}/files/{chat.chat_id}/{message_id}/{name}"
            files = [FakePayload(name=name, url=url, size=1000 + h % 50_000)]
            return FakeMessage(
                message_id=message_id, created_at=created, sender=sender, payload=files
            )
        text = f"{_PHRASES[h % len(_PHRASES)]} #{index}"
        return FakeMessage(message_id=message_id, created_at=created, sender=sender, message=text)
