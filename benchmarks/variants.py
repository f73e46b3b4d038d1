"""The five ways of reading every chat's history that the benchmark compares.

Each variant lists the business's chats (pages of 20), then walks the history
of every chat (pages of 100) with ``concurrency`` chats in flight at a time,
decoding every message, and returns how many messages and pages it read.
Run in a child process by :mod:`benchmarks._child`, one variant per process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

VARIANTS = (
    "yamarket_chats",
    "yamarket_chats_hooks",
    "yamarket_chats_baseline",
    "aiohttp_json",
    "aiohttp_msgspec",
    "httpx_pydantic",
    "generated",
)
LABELS = {
    "yamarket_chats": "yamarket_chats",
    "yamarket_chats_hooks": "yamarket_chats + no-op hooks on every event",
    "yamarket_chats_baseline": "yamarket_chats at the baseline commit",
    "aiohttp_json": "aiohttp + json.loads (dicts)",
    "aiohttp_msgspec": "aiohttp + msgspec structs (floor)",
    "httpx_pydantic": "httpx + pydantic v2",
    "generated": "openapi-python-client (httpx + attrs)",
}
CHATS_PAGE = 20
HISTORY_PAGE = 100


@dataclass
class Target:
    """Where and what to read."""

    url: str
    api_key: str
    business_id: int
    concurrency: int
    generated_path: str | None = None
    baseline_path: str | None = None
    #: The library as users run it: buckets, slots and the server's headers at
    #: work (quotas too high to throttle), instead of client-side limits off.
    as_users: bool = False


@dataclass
class Count:
    """What a read saw: pages (list and history), messages, sum of message ids."""

    messages: int = 0
    pages: int = 0
    id_sum: int = 0


Reader = Callable[[Count], Awaitable[None]]


async def _walk_all(
    chat_ids: list[int], walk: Callable[[int], Awaitable[None]], concurrency: int
) -> None:
    """Walk every chat, ``concurrency`` chats at a time (each chat is sequential)."""
    queue = list(reversed(chat_ids))

    async def worker() -> None:
        while queue:
            await walk(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- 1. yamarket_chats -------------------------------------------------------------


def _library_reader(target: Target, **options: Any) -> Reader:
    from yamarket_chats import ChatsClient, RateLimit
    from yamarket_chats.limits import METHODS

    # A billion an hour: every bucket is asked and charged, none ever waits.
    limits = {m: RateLimit(10**9) if target.as_users else None for m in METHODS}

    async def read(count: Count) -> None:
        async with ChatsClient(
            api_key=target.api_key,
            base_url=target.url,
            limits=limits,
            max_concurrency=4,
            **options,
        ) as client:
            chat_ids = [chat.chat_id async for chat in client.iter_chats(target.business_id)]

            async def walk(chat_id: int) -> None:
                n = id_sum = 0
                async for message in client.iter_chat_history(target.business_id, chat_id):
                    n += 1
                    id_sum += message.message_id
                count.messages += n
                count.id_sum += id_sum

            await _walk_all(chat_ids, walk, target.concurrency)
            count.pages = client.stats.requests

    return read


def make_yamarket_chats(target: Target) -> Reader:
    return _library_reader(target)


def make_yamarket_chats_hooks(target: Target) -> Reader:
    """The library with hooks on every event that do nothing: what hooks cost at most."""
    from yamarket_chats.hooks import CallInfo, ClientHooks

    class Noop(ClientHooks):
        async def on_start(self, call: CallInfo) -> None:
            pass

        async def on_request(self, call: CallInfo) -> None:
            pass

        async def on_response(
            self, call: CallInfo, status: int | None, seconds: float, error: BaseException | None
        ) -> None:
            pass

        async def on_retry(self, call: CallInfo, reason: str, delay: float) -> None:
            pass

        async def on_wait(self, call: CallInfo, reason: str, seconds: float) -> None:
            pass

        async def on_end(self, call: CallInfo) -> None:
            pass

    return _library_reader(target, hooks=Noop())


def make_yamarket_chats_baseline(target: Target) -> Reader:
    """The library as it was at another commit (exported by the harness)."""
    if target.baseline_path is None:
        raise RuntimeError("the yamarket_chats_baseline variant needs --baseline PATH")
    sys.path.insert(0, target.baseline_path)
    import yamarket_chats

    if not yamarket_chats.__file__ or not yamarket_chats.__file__.startswith(target.baseline_path):
        raise RuntimeError(f"imported {yamarket_chats.__file__}, not the baseline")
    return _library_reader(target)


# -- 2. aiohttp + json.loads ---------------------------------------------------------


def make_aiohttp_json(target: Target) -> Reader:
    import aiohttp

    base = f"{target.url}/v2/businesses/{target.business_id}"
    headers = {"Api-Key": target.api_key, "Content-Type": "application/json"}

    async def read(count: Count) -> None:
        async with aiohttp.ClientSession(headers=headers) as session:
            chat_ids: list[int] = []
            params: dict[str, Any] = {"limit": CHATS_PAGE}
            while True:
                async with session.post(f"{base}/chats", params=params, data=b"{}") as resp:
                    resp.raise_for_status()
                    result = json.loads(await resp.read())["result"]
                count.pages += 1
                chat_ids += [chat["chatId"] for chat in result["chats"]]
                token = (result.get("paging") or {}).get("nextPageToken")
                if not token:
                    break
                params["pageToken"] = token

            async def walk(chat_id: int) -> None:
                params: dict[str, Any] = {"chatId": chat_id, "limit": HISTORY_PAGE}
                while True:
                    async with session.post(
                        f"{base}/chats/history", params=params, data=b"{}"
                    ) as r:
                        r.raise_for_status()
                        result = json.loads(await r.read())["result"]
                    count.pages += 1
                    n = id_sum = 0
                    for message in result["messages"]:
                        n += 1
                        id_sum += message["messageId"]
                    count.messages += n
                    count.id_sum += id_sum
                    token = (result.get("paging") or {}).get("nextPageToken")
                    if not token:
                        return
                    params["pageToken"] = token

            await _walk_all(chat_ids, walk, target.concurrency)

    return read


# -- 3. aiohttp + msgspec minimal structs --------------------------------------------


def make_aiohttp_msgspec(target: Target) -> Reader:
    import aiohttp
    import msgspec

    from ._models_msgspec import ChatsEnvelope, HistoryEnvelope

    decode_history = msgspec.json.Decoder(HistoryEnvelope).decode
    decode_chats = msgspec.json.Decoder(ChatsEnvelope).decode
    base = f"{target.url}/v2/businesses/{target.business_id}"
    headers = {"Api-Key": target.api_key, "Content-Type": "application/json"}

    async def read(count: Count) -> None:
        async with aiohttp.ClientSession(headers=headers) as session:
            chat_ids: list[int] = []
            params: dict[str, Any] = {"limit": CHATS_PAGE}
            while True:
                async with session.post(f"{base}/chats", params=params, data=b"{}") as resp:
                    resp.raise_for_status()
                    chats = decode_chats(await resp.read()).result
                count.pages += 1
                chat_ids += [chat.chat_id for chat in chats.chats]
                token = chats.paging.next_page_token if chats.paging else None
                if not token:
                    break
                params["pageToken"] = token

            async def walk(chat_id: int) -> None:
                params: dict[str, Any] = {"chatId": chat_id, "limit": HISTORY_PAGE}
                while True:
                    async with session.post(
                        f"{base}/chats/history", params=params, data=b"{}"
                    ) as r:
                        r.raise_for_status()
                        page = decode_history(await r.read()).result
                    count.pages += 1
                    n = id_sum = 0
                    for message in page.messages:
                        n += 1
                        id_sum += message.message_id
                    count.messages += n
                    count.id_sum += id_sum
                    token = page.paging.next_page_token if page.paging else None
                    if not token:
                        return
                    params["pageToken"] = token

            await _walk_all(chat_ids, walk, target.concurrency)

    return read


# -- 4. httpx + pydantic v2 ----------------------------------------------------------


def make_httpx_pydantic(target: Target) -> Reader:
    import httpx

    from ._models_pydantic import ChatsEnvelope, HistoryEnvelope

    headers = {"Api-Key": target.api_key, "Content-Type": "application/json"}
    base = f"{target.url}/v2/businesses/{target.business_id}"
    limits = httpx.Limits(max_connections=target.concurrency)

    async def read(count: Count) -> None:
        async with httpx.AsyncClient(headers=headers, limits=limits) as client:
            chat_ids: list[int] = []
            params: dict[str, Any] = {"limit": CHATS_PAGE}
            while True:
                resp = await client.post(f"{base}/chats", params=params, content=b"{}")
                resp.raise_for_status()
                chats = ChatsEnvelope.model_validate_json(resp.content).result
                count.pages += 1
                chat_ids += [chat.chat_id for chat in chats.chats]
                token = chats.paging.next_page_token if chats.paging else None
                if not token:
                    break
                params["pageToken"] = token

            async def walk(chat_id: int) -> None:
                params: dict[str, Any] = {"chatId": chat_id, "limit": HISTORY_PAGE}
                while True:
                    resp = await client.post(f"{base}/chats/history", params=params, content=b"{}")
                    resp.raise_for_status()
                    page = HistoryEnvelope.model_validate_json(resp.content).result
                    count.pages += 1
                    n = id_sum = 0
                    for message in page.messages:
                        n += 1
                        id_sum += message.message_id
                    count.messages += n
                    count.id_sum += id_sum
                    token = page.paging.next_page_token if page.paging else None
                    if not token:
                        return
                    params["pageToken"] = token

            await _walk_all(chat_ids, walk, target.concurrency)

    return read


# -- 5. the client generated by openapi-python-client -----------------------------------


def make_generated(target: Target) -> Reader:
    import httpx

    if target.generated_path is None:
        raise RuntimeError("the generated variant needs --generated PATH")
    sys.path.insert(0, target.generated_path)
    from market_chats_generated import AuthenticatedClient
    from market_chats_generated.api.chats import get_chat_history, get_chats
    from market_chats_generated.models import (
        GetChatHistoryRequest,
        GetChatHistoryResponse,
        GetChatsRequest,
        GetChatsResponse,
    )
    from market_chats_generated.types import UNSET

    async def read(count: Count) -> None:
        client = AuthenticatedClient(
            base_url=target.url,
            token=target.api_key,
            prefix="",
            auth_header_name="Api-Key",
            raise_on_unexpected_status=True,
            httpx_args={"limits": httpx.Limits(max_connections=target.concurrency)},
        )
        business = target.business_id
        async with client:
            chat_ids: list[int] = []
            token: Any = UNSET
            while True:
                chats = await get_chats.asyncio(
                    business,
                    client=client,
                    body=GetChatsRequest(),
                    page_token=token,
                    limit=CHATS_PAGE,
                )
                if not isinstance(chats, GetChatsResponse) or not chats.result:
                    raise RuntimeError(f"get_chats failed: {chats!r}")
                count.pages += 1
                chat_ids += [chat.chat_id for chat in chats.result.chats]
                token = chats.result.paging.next_page_token if chats.result.paging else UNSET
                if not token:
                    break

            async def walk(chat_id: int) -> None:
                token: Any = UNSET
                while True:
                    page = await get_chat_history.asyncio(
                        business,
                        client=client,
                        body=GetChatHistoryRequest(),
                        chat_id=chat_id,
                        page_token=token,
                        limit=HISTORY_PAGE,
                    )
                    if not isinstance(page, GetChatHistoryResponse) or not page.result:
                        raise RuntimeError(f"get_chat_history failed: {page!r}")
                    count.pages += 1
                    n = id_sum = 0
                    for message in page.result.messages:
                        n += 1
                        id_sum += message.message_id
                    count.messages += n
                    count.id_sum += id_sum
                    token = page.result.paging.next_page_token if page.result.paging else UNSET
                    if not token:
                        return

            await _walk_all(chat_ids, walk, target.concurrency)

    return read


FACTORIES: dict[str, Callable[[Target], Reader]] = {
    "yamarket_chats": make_yamarket_chats,
    "yamarket_chats_hooks": make_yamarket_chats_hooks,
    "yamarket_chats_baseline": make_yamarket_chats_baseline,
    "aiohttp_json": make_aiohttp_json,
    "aiohttp_msgspec": make_aiohttp_msgspec,
    "httpx_pydantic": make_httpx_pydantic,
    "generated": make_generated,
}
