"""Configuration of the fake Market API."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

#: Operation names, exactly the client's method names.
OPERATIONS: tuple[str, ...] = (
    "create_chat",
    "get_chats",
    "get_chat",
    "get_chat_history",
    "get_chat_message",
    "send_message_to_chat",
    "send_file_to_chat",
)

#: Hourly quotas from the spec's ``x-resource-limit-config``.
DEFAULT_QUOTAS: Mapping[str, int] = MappingProxyType(
    {
        "create_chat": 1000,
        "get_chats": 5000,
        "get_chat": 1000,
        "get_chat_history": 10000,
        "get_chat_message": 1000,
        "send_message_to_chat": 1000,
        "send_file_to_chat": 1000,
    }
)

DEFAULT_API_KEY = "ACMA:fake-api-key"
DEFAULT_OAUTH_TOKEN = "y0_fake-oauth-token"
MAX_ID = 2**63 - 1  #: ids of the spec are int64


@dataclasses.dataclass(frozen=True)
class FakeMarketConfig:
    """How the fake Market is seeded and how strictly it behaves.

    ``api_keys`` and ``oauth_tokens`` map a secret to the business ids it may
    access (``None``: every business of the fake). ``quotas`` overrides the
    per-operation request quotas of one ``quota_window`` (seconds).
    ``max_parallel`` caps in-flight requests per business (``None``: no cap).

    Connections: with ``keep_alive`` False (the real API's behaviour) every
    answer says ``Connection: close``; with True the fake keeps connections
    open. ``keep_alive_timeout`` closes a kept-alive connection idle that many
    seconds (``None``: aiohttp's default, about an hour).
    ``max_requests_per_connection`` answers that many requests on a connection,
    then treats it as closed: the next request arriving on it is dropped
    unanswered (journalled with ``fault="stale_connection"``), as when a server
    closes an idle connection just as the client reuses it.

    Orders and returns: every business holds the orders and returns of its
    chats (seeded or added), plus the ids in ``orders`` and ``returns``, which
    are chat-less until ``createChat`` starts a chat about one. ``createChat``
    about any other order or return answers 404, as the real API does.
    """

    businesses: tuple[int, ...] = (1001,)
    chats_per_business: int = 10
    messages_per_chat: int = 50
    seed: int = 0
    api_keys: Mapping[str, frozenset[int] | None] = dataclasses.field(
        default_factory=lambda: {DEFAULT_API_KEY: None}
    )
    oauth_tokens: Mapping[str, frozenset[int] | None] = dataclasses.field(
        default_factory=lambda: {DEFAULT_OAUTH_TOKEN: None}
    )
    limits_enabled: bool = True
    quota_window: float = 3600.0
    quotas: Mapping[str, int] = dataclasses.field(default_factory=dict)
    max_parallel: int | None = 4
    keep_alive: bool = False
    keep_alive_timeout: float | None = None
    max_requests_per_connection: int | None = None
    orders: tuple[int, ...] = ()
    returns: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.quotas) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operations in quotas: {sorted(unknown)}")
        if any(b < 1 for b in self.businesses):
            raise ValueError("business ids must be >= 1")
        for name in ("orders", "returns"):
            ids = tuple(getattr(self, name))
            if not all(type(i) is int and 1 <= i <= MAX_ID for i in ids):
                raise ValueError(f"{name} must hold integer ids in 1..2**63-1")
            object.__setattr__(self, name, ids)  # a list given is kept as a tuple
        if self.quota_window <= 0:
            raise ValueError("quota_window must be > 0")
        if self.keep_alive_timeout is not None and self.keep_alive_timeout <= 0:
            raise ValueError("keep_alive_timeout must be > 0 (or None)")
        if self.max_requests_per_connection is not None and self.max_requests_per_connection < 1:
            raise ValueError("max_requests_per_connection must be >= 1 (or None)")
        if not self.keep_alive and (
            self.keep_alive_timeout is not None or self.max_requests_per_connection is not None
        ):
            raise ValueError(
                "keep_alive_timeout and max_requests_per_connection need keep_alive=True"
            )

    def quota(self, operation: str) -> int:
        """The request quota of ``operation`` per window."""
        return self.quotas.get(operation, DEFAULT_QUOTAS[operation])
