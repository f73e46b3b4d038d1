"""Hostile input: every argument that cannot be valid is refused before any request.

Each case asserts an `InvalidRequestError` (also a `ValueError`) naming the
argument, and that the fake's journal stays empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSINESS
from yamarket_chats import (
    ApiError,
    ChatContext,
    ChatsClient,
    ChatStatus,
    InvalidRequestError,
    RateLimit,
)
from yamarket_chats.testing import FakeServer

BIG = 2**63  # one past the spec's int64
SECRET = "SECRETPART"


def _ctx(id_: object) -> ChatContext:
    return ChatContext("ORDER", id_)  # type: ignore[arg-type]


# (call, the argument the message must name)
OPERATIONS: list[tuple[Callable[[ChatsClient], Any], str]] = [
    # ids past int64, and bool taken for an int
    (lambda c: c.get_chat(BIG, 1), "business_id"),
    (lambda c: c.get_chat(BUSINESS, BIG), "chat_id"),
    (lambda c: c.get_chat(BUSINESS, 10**5000), "chat_id"),
    (lambda c: c.get_chat(BUSINESS, True), "chat_id"),
    (lambda c: c.get_chat(BUSINESS, "1"), "chat_id"),
    (lambda c: c.get_chat_message(BUSINESS, 1, BIG), "message_id"),
    (lambda c: c.get_chat_history(BUSINESS, BIG), "chat_id"),
    (lambda c: c.get_chat_history(BUSINESS, 1, message_id_from=BIG), "message_id_from"),
    (lambda c: c.get_chat_history(BUSINESS, 1, message_id_from=1.0), "message_id_from"),
    (lambda c: c.create_chat(BUSINESS, order_id=BIG), "order_id"),
    (lambda c: c.create_chat(BUSINESS, order_id=-BIG - 1), "order_id"),
    (lambda c: c.create_chat(BUSINESS, order_id=True), "order_id"),
    (lambda c: c.create_chat(BUSINESS, context=_ctx(BIG)), "context.id"),
    (lambda c: c.create_chat(BUSINESS, context=("ORDER", 1)), "context"),
    (lambda c: c.create_chat(BIG, order_id=1), "business_id"),
    (lambda c: c.send_message_to_chat(BUSINESS, BIG, "hi"), "chat_id"),
    (lambda c: c.send_file_to_chat(BIG, 1, b"x"), "business_id"),
    # filters: items of the wrong type or outside the spec's enums
    (lambda c: c.get_chats(BUSINESS, order_ids=[BIG]), "order_ids item"),
    (lambda c: c.get_chats(BUSINESS, order_ids=[None]), "order_ids item"),
    (lambda c: c.get_chats(BUSINESS, order_ids=["1"]), "order_ids item"),
    (lambda c: c.get_chats(BUSINESS, order_ids=[False]), "order_ids item"),
    (lambda c: c.get_chats(BUSINESS, order_ids=5), "order_ids"),
    (lambda c: c.get_chats(BUSINESS, order_ids={1: 2}), "order_ids"),
    (lambda c: c.get_chats(BUSINESS, contexts=[_ctx(BIG)]), "contexts item.id"),
    (lambda c: c.get_chats(BUSINESS, contexts=[None]), "contexts item"),
    (lambda c: c.get_chats(BUSINESS, contexts=[ChatContext("DIRECT", 1)]), "contexts item.type"),
    (lambda c: c.get_chats(BUSINESS, statuses=[1]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=[None]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=["new"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, types=["X"]), "types item"),
    (lambda c: c.get_chats(BUSINESS, types=[ChatStatus.NEW]), "types item"),
    (lambda c: c.get_chats(BUSINESS, context_types=[b"ORDER"]), "context_types item"),
    (lambda c: c.iter_chats(BUSINESS, order_ids=[None]), "order_ids item"),
    (lambda c: c.iter_chats(BIG), "business_id"),
    (lambda c: c.iter_chat_history(BUSINESS, BIG), "chat_id"),
    # messages
    (lambda c: c.send_message_to_chat(BUSINESS, 1, None), "message"),
    (lambda c: c.send_message_to_chat(BUSINESS, 1, b"bytes"), "message"),
    (lambda c: c.send_message_to_chat(BUSINESS, 1, 5), "message"),
    (lambda c: c.send_message_to_chat(BUSINESS, 1, "bad \udcff byte"), "message"),
    (lambda c: c.send_message_to_chat(BUSINESS, 1, "\ud83d"), "message"),
    # page tokens and sizes
    (lambda c: c.get_chats(BUSINESS, page_token=5), "page_token"),
    (lambda c: c.get_chats(BUSINESS, page_token="abc\r\nX-Injected: 1"), "page_token"),
    (lambda c: c.get_chats(BUSINESS, page_token="a\x00b"), "page_token"),
    (lambda c: c.get_chats(BUSINESS, page_token="a" * 5000), "page_token"),
    (lambda c: c.get_chat_history(BUSINESS, 1, page_token="\udcff"), "page_token"),
    (lambda c: c.iter_chats(BUSINESS, page_token="x\n"), "page_token"),
    (lambda c: c.iter_chat_history(BUSINESS, 1, page_token=b"tok"), "page_token"),
    (lambda c: c.get_chats(BUSINESS, limit=True), "limit"),
    (lambda c: c.get_chat_history(BUSINESS, 1, limit=2.0), "limit"),
    # file names and content types (headers of the upload)
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", filename="a\r\nb"), "filename"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", filename="a\x00"), "filename"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", filename=5), "filename"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", filename="n" * 256), "filename"),
    (
        lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type="text/plain\r\nX: y"),
        "content_type",
    ),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type=b"text/plain"), "content_type"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, "/no/such\x00file"), "file"),
]


@pytest.mark.parametrize(("call", "field"), OPERATIONS)
async def test_operation_input_is_refused_before_any_request(
    fake: FakeServer, client: ChatsClient, call: Callable[[ChatsClient], Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        result = call(client)  # the iterators refuse when made, the methods when awaited
        if inspect.isawaitable(result):
            await result
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(field) or f" {field}" in str(info.value)
    assert len(fake.journal) == 0


def _kwargs(fake: FakeServer, **changes: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"api_key": fake.api_key, "base_url": fake.url}
    options.update(changes)
    return options


# (constructor arguments changed, the argument the message must name)
CONSTRUCTOR: list[tuple[dict[str, Any], str]] = [
    ({"api_key": f"{SECRET}\r\nX-Injected: 1"}, "api_key"),
    ({"api_key": f"{SECRET}\n"}, "api_key"),
    ({"api_key": f"{SECRET}\x00"}, "api_key"),
    ({"api_key": f"{SECRET} {SECRET}"}, "api_key"),
    ({"api_key": f"{SECRET}ключ"}, "api_key"),
    ({"api_key": SECRET * 410}, "api_key"),  # > 4 KiB
    ({"api_key": SECRET * 100_000}, "api_key"),  # 1 MB
    ({"api_key": ""}, "api_key"),
    ({"api_key": 123}, "api_key"),
    ({"api_key": None, "oauth_token": f"{SECRET}\r\n"}, "oauth_token"),
    ({"api_key": None, "oauth_token": b"token"}, "oauth_token"),
    ({"base_url": 123}, "base_url"),
    ({"base_url": None}, "base_url"),
    ({"base_url": "ftp://example.com"}, "base_url"),
    ({"base_url": "http://[::1"}, "base_url"),
    ({"base_url": "http://127.0.0.1:99999"}, "base_url"),
    ({"base_url": "localhost:8080"}, "base_url"),
    ({"base_url": "http://"}, "base_url"),
    ({"base_url": f"http://user:{SECRET}@127.0.0.1"}, "base_url"),
    ({"base_url": "http://127.0.0.1/?q=1"}, "base_url"),
    ({"base_url": "http://127.0.0.1/a b"}, "base_url"),
    ({"base_url": "http://127.0.0.1\r\n"}, "base_url"),
    ({"timeout": math.inf}, "timeout"),
    ({"timeout": math.nan}, "timeout"),
    ({"timeout": "15"}, "timeout"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"timeout": 10**400}, "timeout"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"max_retries": True}, "max_retries"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": "5"}, "max_retries"),
    ({"max_concurrency": 1.5}, "max_concurrency"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": True}, "max_concurrency"),
    ({"backoff": -1}, "backoff"),
    ({"backoff": math.inf}, "backoff"),
    ({"backoff": "0.5"}, "backoff"),
    ({"max_backoff": math.nan}, "max_backoff"),
    ({"backoff": 2.0, "max_backoff": 1.0}, "max_backoff"),
    ({"limits": {"get_chat": 5}}, "limits"),
    ({"limits": {"get_chat": (5, 60)}}, "limits"),
    ({"limits": {"nope": None}}, "limits"),
    ({"limits": [("get_chat", None)]}, "limits"),
    ({"max_wait": math.inf}, "max_wait"),
    ({"max_wait": math.nan}, "max_wait"),
    ({"max_wait": 0}, "max_wait"),
    ({"max_wait": "60"}, "max_wait"),
    ({"max_wait": True}, "max_wait"),
    ({"keep_alive": "yes"}, "keep_alive"),
    ({"keep_alive": 1}, "keep_alive"),
    ({"keep_alive": None}, "keep_alive"),
    ({"session": "not a session"}, "session"),
    ({"limiter": object()}, "limiter"),
]


@pytest.mark.parametrize(("changes", "field"), CONSTRUCTOR)
async def test_constructor_input_is_refused(
    fake: FakeServer, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ChatsClient(**_kwargs(fake, **changes))
    text = str(info.value)
    assert text.startswith(field) or f" {field}" in text
    assert SECRET not in text and SECRET not in repr(info.value)
    assert len(fake.journal) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": "15"}, "timeout"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"max_wait": math.nan}, "max_wait"),
        ({"max_wait": -1}, "max_wait"),
    ],
)
async def test_with_options_input_is_refused(
    fake: FakeServer, client: ChatsClient, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError, match=f"^{field} must be"):
        client.with_options(**changes)
    assert len(fake.journal) == 0


async def test_sane_options_are_accepted(fake: FakeServer) -> None:
    async with ChatsClient(
        api_key=fake.api_key,
        base_url=fake.url + "/",
        timeout=1,
        max_retries=0,
        max_concurrency=None,
        backoff=0,
        max_backoff=0,
        limits={"get_chat": RateLimit(10), "get_chats": None},
        max_wait=None,
        keep_alive=False,
    ) as client:
        chat = fake.market.chats(BUSINESS)[0]
        assert (await client.get_chat(BUSINESS, chat.chat_id)).chat_id == chat.chat_id


async def test_create_chat_sends_order_id_and_context_together(
    fake: FakeServer, client: ChatsClient
) -> None:
    # The spec's CreateChatRequest allows both fields (and the deprecated
    # orderId has no minimum): the client sends what the spec allows.
    order_id = 0
    with contextlib.suppress(ApiError):  # what the server makes of it is its own business
        await client.create_chat(BUSINESS, order_id=order_id, context=ChatContext("ORDER", 7))
    [entry] = fake.journal.entries("create_chat")
    assert entry.body == {"orderId": order_id, "context": {"type": "ORDER", "id": 7}}


async def test_filters_accept_enum_members_and_wire_strings(
    fake: FakeServer, client: ChatsClient
) -> None:
    await client.get_chats(BUSINESS, statuses=[ChatStatus.NEW, "FINISHED"], types=["CHAT"])
    [entry] = fake.journal.entries("get_chats")
    assert entry.body == {"statuses": ["NEW", "FINISHED"], "types": ["CHAT"]}


# --- files that are not regular files -----------------------------------------

_SEND_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from yamarket_chats import ChatsClient, InvalidRequestError

    async def main():
        async with ChatsClient(api_key=sys.argv[1], base_url=sys.argv[2]) as client:
            try:
                await asyncio.wait_for(client.send_file_to_chat(1, 1, sys.argv[3]), 1.0)
            except InvalidRequestError as exc:
                print("refused:", exc, flush=True)
            except asyncio.TimeoutError:
                print("cancelled", flush=True)

    asyncio.run(main())
    print("returned", flush=True)
    """
)


async def _run_send(fake: FakeServer, path: Path) -> str:
    """Send `path` in a fresh process; its output, or a failure if it hangs."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SEND_SCRIPT,
        fake.api_key,
        fake.url,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("send_file_to_chat on a FIFO hung: asyncio.run() never returned")
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
async def test_fifo_without_writer_is_refused_at_once(fake: FakeServer, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = await _run_send(fake, fifo)
    assert "refused: file 'fifo' is a pipe or device with nothing to read" in out
    assert out.rstrip().endswith("returned")
    assert len(fake.journal) == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
async def test_fifo_with_a_silent_writer_can_be_cancelled(fake: FakeServer, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer that never writes
    try:
        out = await _run_send(fake, fifo)
    finally:
        os.close(writer)
    assert "cancelled" in out and out.rstrip().endswith("returned")
    assert len(fake.journal) == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
async def test_fifo_is_read_until_its_writer_closes(
    fake: FakeServer, client: ChatsClient, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(writer, b"first ")
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    send = asyncio.create_task(client.send_file_to_chat(BUSINESS, chat_id, fifo))
    await asyncio.sleep(0.2)
    assert not send.done()  # still reading: the writer has not closed
    os.write(writer, b"second")
    os.close(writer)
    await asyncio.wait_for(send, 10)
    [entry] = fake.journal.entries("send_file_to_chat")
    assert entry.body["file"]["size"] == len(b"first second")


async def test_directory_is_refused(fake: FakeServer, client: ChatsClient, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cannot read file"):
        await client.send_file_to_chat(BUSINESS, 1, tmp_path)
    assert len(fake.journal) == 0
