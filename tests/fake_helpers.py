"""Helpers shared by the fake server's tests (``test_fake_*``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from yamarket_chats.testing import FakeServer

BUSINESS = 1001
V2 = "/v2/businesses/{b}"


class Api:
    """A thin aiohttp wrapper: ``await api.call("POST", "/chats", json=...)``."""

    def __init__(self, server: FakeServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        *,
        business: int = BUSINESS,
        prefix: str = V2,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """Send a request; return (status, decoded JSON body or None, response)."""
        if headers is None:
            headers = {"Api-Key": self.server.api_key}
        url = self.server.url + prefix.format(b=business) + path
        async with self.session.request(method, url, headers=headers, **kwargs) as response:
            raw = await response.read()
            try:
                body = await response.json(content_type=None) if raw else None
            except ValueError:
                body = None
            return response.status, body, response

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request that must succeed; return its ``result``."""
        status, body, _ = await self.call(method, path, **kwargs)
        assert status == 200, body
        assert body["status"] == "OK"
        return body.get("result")

    async def history(self, chat_id: int, **kwargs: Any) -> list[dict[str, Any]]:
        """Walk a chat's whole history page by page."""
        params = {"chatId": chat_id, **kwargs.pop("params", {})}
        kwargs.setdefault("json", {})
        messages: list[dict[str, Any]] = []
        while True:
            result = await self.ok("POST", "/chats/history", params=params, **kwargs)
            messages += result["messages"]
            token = result["paging"].get("nextPageToken")
            if not token:
                return messages
            params["pageToken"] = token


@contextlib.asynccontextmanager
async def connect(server: FakeServer) -> AsyncIterator[Api]:
    """An ``Api`` on a fresh aiohttp session."""
    async with aiohttp.ClientSession() as session:
        yield Api(server, session)


def error_message(body: Any) -> str:
    """The message of the first error of an error envelope."""
    assert body["status"] == "ERROR"
    return str(body["errors"][0]["message"])
