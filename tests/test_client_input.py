"""Hostile input: every argument that cannot be valid is refused before any request.

Each case asserts an `InvalidRequestError` (also a `ValueError`) naming the
argument, and that the fake's journal stays empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import io
import logging
import math
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from tests.conftest import BUSINESS
from yamarket_chats import (
    ApiError,
    BadRequestError,
    ChatContext,
    ChatContextType,
    ChatsClient,
    ChatStatus,
    InvalidRequestError,
    RateLimit,
)
from yamarket_chats.limits import METHODS
from yamarket_chats.testing import FakeServer

BIG = 2**63  # one past the spec's int64
SECRET = "SECRETPART"


def _ctx(id_: object) -> ChatContext:
    return ChatContext("ORDER", id_)  # type: ignore[arg-type]


def _ctx_of(type_: object) -> ChatContext:
    return ChatContext(type_, 1)  # type: ignore[arg-type]


class _NotReadable:
    read = 5  # an attribute called read that is no method


def _closed_file() -> io.BytesIO:
    stream = io.BytesIO(b"data")
    stream.close()
    return stream


class _NoPath(os.PathLike):  # type: ignore[type-arg]
    def __fspath__(self) -> Any:
        return 5


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
    # values unlike the spec's enum values (a value shaped like them may be new: sent)
    (lambda c: c.get_chats(BUSINESS, statuses=["New_Status"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=[" NEW"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=["NEW STATUS"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=["NEW\n"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=[""]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=["1NEW"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=["_NEW"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=["N" * 65]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=["\uff2e\uff25\uff37"]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, statuses=[1.5]), "statuses item"),
    (lambda c: c.get_chats(BUSINESS, types=["x"]), "types item"),
    (lambda c: c.get_chats(BUSINESS, types=[ChatStatus.NEW]), "types item"),
    (lambda c: c.get_chats(BUSINESS, types=[ChatContextType.ORDER]), "types item"),
    (lambda c: c.get_chats(BUSINESS, context_types=[b"ORDER"]), "context_types item"),
    (lambda c: c.get_chats(BUSINESS, context_types=["order"]), "context_types item"),
    (lambda c: c.get_chats(BUSINESS, contexts=[_ctx_of("return")]), "contexts item.type"),
    (
        lambda c: c.get_chats(BUSINESS, contexts=[_ctx_of(ChatContextType.DIRECT)]),
        "contexts item.type",
    ),
    (lambda c: c.create_chat(BUSINESS, context=_ctx_of("Order")), "context.type"),
    (lambda c: c.create_chat(BUSINESS, context=_ctx_of("DIRECT")), "context.type"),
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
    # content types that are no media type (RFC 6838 type/subtype, RFC 9110 parameters)
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type="текст/plain"), "content_type"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type="garbage"), "content_type"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type="text/"), "content_type"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type="*/*"), "content_type"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type="text/plain;"), "content_type"),
    (
        lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type="text/plain; charset"),
        "content_type",
    ),
    (
        lambda c: c.send_file_to_chat(BUSINESS, 1, b"x", content_type='text/plain; a="b'),
        "content_type",
    ),
    # file objects that cannot be read
    (lambda c: c.send_file_to_chat(BUSINESS, 1, _NotReadable()), "file"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, _closed_file()), "file"),
    (lambda c: c.send_file_to_chat(BUSINESS, 1, _NoPath()), "file"),
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
    ({"base_url": "ftp://example.com"}, "base_url"),
    ({"base_url": "http://[::1"}, "base_url"),
    ({"base_url": "http://127.0.0.1:99999"}, "base_url"),
    ({"base_url": "localhost:8080"}, "base_url"),
    ({"base_url": "http://"}, "base_url"),
    ({"base_url": f"http://user:{SECRET}@127.0.0.1"}, "base_url"),
    ({"base_url": "http://127.0.0.1/?q=1"}, "base_url"),
    ({"base_url": "http://127.0.0.1/a b"}, "base_url"),
    ({"base_url": "http://127.0.0.1\r\n"}, "base_url"),
    # hosts aiohttp could not send to: a raw UnicodeError at the first call before
    ({"base_url": "http://" + "a" * 64 + ".example"}, "base_url"),
    ({"base_url": "http://a..b"}, "base_url"),
    ({"base_url": "http://.example"}, "base_url"),
    ({"base_url": "http://" + "a." * 127 + "com"}, "base_url"),  # 257 characters
    ({"base_url": "http://xn--a.com"}, "base_url"),
    # hosts that normalise to something no resolver takes
    ({"base_url": "http://ex\u00a0ample.com"}, "base_url"),  # NFKC: a space
    ({"base_url": "http://ex\uff05ample.com"}, "base_url"),  # NFKC: '%'
    ({"base_url": "http://%41.example"}, "base_url"),
    ({"base_url": "http://1.2.3.4.5"}, "base_url"),
    ({"base_url": "http://999.0.0.1"}, "base_url"),
    ({"base_url": "http://[fe80::1%25eth0]"}, "base_url"),
    ({"base_url": "http://127.0.0.1:0"}, "base_url"),
    ({"base_url": "http://127.0.0.1/v2/businesses/"}, "base_url"),  # the client adds it
    ({"base_url": "http://127.0.0.1/proxy/v2/businesses/1001"}, "base_url"),
    # an invalid URL with a password: yarl's text is not echoed
    ({"base_url": f"http://user:{SECRET}@ex\u2028ample.com"}, "base_url"),
    ({"base_url": f"http://user:{SECRET}@127.0.0.1:99999"}, "base_url"),
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


# (call, the argument the DEBUG line names, the value, the body field it goes in)
NEW_ENUM_VALUES: list[tuple[Callable[[ChatsClient], Any], str, str, str]] = [
    (
        lambda c: c.get_chats(BUSINESS, statuses=[ChatStatus.NEW, "NEW_STATUS_2027"]),
        "statuses item",
        "NEW_STATUS_2027",
        "statuses",
    ),
    (lambda c: c.get_chats(BUSINESS, types=["GROUP_CHAT"]), "types item", "GROUP_CHAT", "types"),
    (
        lambda c: c.get_chats(BUSINESS, context_types=["SUPPORT_TICKET"]),
        "context_types item",
        "SUPPORT_TICKET",
        "contextTypes",
    ),
    (
        lambda c: c.get_chats(BUSINESS, contexts=[_ctx_of("EXCHANGE")]),
        "contexts item.type",
        "EXCHANGE",
        "contexts",
    ),
    (
        lambda c: c.create_chat(BUSINESS, context=_ctx_of("E" * 64)),
        "context.type",
        "E" * 64,
        "context",
    ),
]


@pytest.mark.parametrize(("call", "field", "value", "key"), NEW_ENUM_VALUES)
async def test_an_enum_value_the_api_may_have_added_is_sent_and_logged(
    fake: FakeServer,
    client: ChatsClient,
    caplog: pytest.LogCaptureFixture,
    call: Callable[[ChatsClient], Any],
    field: str,
    value: str,
    key: str,
) -> None:
    # Answers already decode values added later; a filter must be able to use them too.
    caplog.set_level(logging.DEBUG, logger="yamarket_chats")
    with pytest.raises(BadRequestError):  # the fake knows the spec of today: a 400
        await call(client)
    [entry] = fake.journal.entries()  # sent once (a 400 is not retried)
    assert value in repr(entry.body[key])
    [line] = [r for r in caplog.records if value in r.getMessage() and r.name == "yamarket_chats"]
    assert line.levelno == logging.DEBUG
    assert line.getMessage().startswith(f"{field} {value!r} is no ")


async def test_known_enum_values_are_not_logged(
    fake: FakeServer, client: ChatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="yamarket_chats")
    await client.get_chats(BUSINESS, statuses=["FINISHED"], context_types=[ChatContextType.DIRECT])
    assert not [r for r in caplog.records if "is no " in r.getMessage()]


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


def unread(fd: int) -> int:
    """Bytes waiting in the pipe ``fd`` belongs to (FIONREAD; POSIX, as FIFOs are)."""
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]  # type: ignore[no-any-return]


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
    deadline = time.monotonic() + 10
    while unread(writer):  # the sign that it reads: the pipe was drained
        assert time.monotonic() < deadline and not send.done()
        await asyncio.sleep(0.01)
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


# --- values of the caller's own types are sent as their wire values ------------


class _MyStatus(str, enum.Enum):
    NEW = "NEW"


class _MyType(str, enum.Enum):
    chat = "CHAT"  # a member name that differs from its value


class _MyContextType(str, enum.Enum):
    ORDER = "ORDER"


class _MyId(enum.IntEnum):
    ORDER = 7


class _Text(str):
    def __str__(self) -> str:
        return "not the text"


async def test_a_callers_str_enum_members_are_sent_as_their_wire_strings(
    fake: FakeServer, client: ChatsClient
) -> None:
    await client.get_chats(
        BUSINESS,
        statuses=[_MyStatus.NEW],
        types=[_MyType.chat],
        context_types=[_MyContextType.ORDER],
        contexts=[ChatContext(_MyContextType.ORDER, _MyId.ORDER)],
        order_ids=[_MyId.ORDER],
    )
    with contextlib.suppress(ApiError):  # order 7 may have no chat: only the body matters
        await client.create_chat(
            BUSINESS, order_id=_MyId.ORDER, context=ChatContext(_MyContextType.ORDER, 7)
        )
    [chats] = fake.journal.entries("get_chats")
    assert chats.body == {
        "statuses": ["NEW"],
        "types": ["CHAT"],
        "contextTypes": ["ORDER"],
        "contexts": [{"type": "ORDER", "id": 7}],
        "orderIds": [7],
    }
    [create] = fake.journal.entries("create_chat")
    assert create.body == {"orderId": 7, "context": {"type": "ORDER", "id": 7}}


async def test_str_and_int_subclasses_are_sent_as_plain_values(
    fake: FakeServer, client: ChatsClient
) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    business = enum.IntEnum("Business", {"MAIN": BUSINESS}).MAIN
    await client.send_message_to_chat(business, chat_id, _Text("hello"))
    await client.get_chat_history(BUSINESS, chat_id, message_id_from=_MyId.ORDER)
    [send] = fake.journal.entries("send_message_to_chat")
    assert send.business_id == BUSINESS and send.body == {"message": "hello"}
    [history] = fake.journal.entries("get_chat_history")
    assert history.body == {"messageIdFrom": 7}


# --- base URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("http://ЯНДЕКС.рф", "http://xn--d1acpjx3f.xn--p1ai"),
        ("https://API.partner.market.yandex.ru./", "https://api.partner.market.yandex.ru."),
        ("http://" + "a" * 63 + ".example", "http://" + "a" * 63 + ".example"),
        ("http://a_b.internal:8080/prefix/", "http://a_b.internal:8080/prefix"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
async def test_valid_hosts_are_accepted_and_encodable(
    fake: FakeServer, url: str, normalized: str
) -> None:
    client = ChatsClient(api_key=fake.api_key, base_url=url)
    assert client._base == normalized + "/v2/businesses/"
    host = URL(client._base).raw_host
    assert host is not None
    host.encode("idna")  # what getaddrinfo and TLS do with it


async def test_a_long_label_is_refused_not_a_unicode_error_at_the_first_call(
    fake: FakeServer,
) -> None:
    with pytest.raises(InvalidRequestError, match=r"^base_url host: .* label 1 has 64"):
        ChatsClient(api_key=fake.api_key, base_url="http://" + "a" * 64 + ".example")
    assert len(fake.journal) == 0


# --- files ------------------------------------------------------------------------


async def test_an_empty_file_is_refused_by_the_librarys_own_rule(
    fake: FakeServer, client: ChatsClient, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for file in (empty, b"", io.BytesIO()):
        with pytest.raises(InvalidRequestError) as info:
            await client.send_file_to_chat(BUSINESS, 1, file)
        text = str(info.value)
        assert "is empty; this library refuses empty files" in text
        assert "the API needs" not in text  # the spec sets no minimum
    assert len(fake.journal) == 0


async def test_a_media_type_with_parameters_is_sent_as_given(
    fake: FakeServer, client: ChatsClient
) -> None:
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    await client.send_file_to_chat(
        BUSINESS, chat_id, b"x", content_type='text/plain; charset=utf-8; x="a b"'
    )
    [entry] = fake.journal.entries("send_file_to_chat")
    assert entry.body["file"]["content_type"] == 'text/plain; charset=utf-8; x="a b"'


def _make_file(directory: Path, name: bytes) -> bytes:
    path = os.fsencode(directory) + b"/" + name
    try:
        with open(path, "wb") as f:
            f.write(b"data")
    except (OSError, ValueError):
        pytest.skip("this file system does not allow such a name")
    return path


@pytest.mark.parametrize("name", [b"bad-\xff-byte.txt", b"new\nline.txt"])
async def test_a_file_name_that_cannot_be_sent_is_refused_with_a_hint(
    fake: FakeServer, client: ChatsClient, tmp_path: Path, name: bytes
) -> None:
    path = os.fsdecode(_make_file(tmp_path, name))
    with pytest.raises(
        InvalidRequestError, match=r"^filename taken from the path .* pass filename="
    ):
        await client.send_file_to_chat(BUSINESS, 1, path)
    assert len(fake.journal) == 0
    # with a name given, the same file goes out
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    await client.send_file_to_chat(BUSINESS, chat_id, path, filename="renamed.txt")
    [entry] = fake.journal.entries("send_file_to_chat")
    assert entry.body["file"]["filename"] == "renamed.txt"


async def test_a_bytes_path_is_sent_with_its_name(
    fake: FakeServer, client: ChatsClient, tmp_path: Path
) -> None:
    class BytesPath(os.PathLike):  # type: ignore[type-arg]
        def __fspath__(self) -> bytes:
            return path

    path = _make_file(tmp_path, b"report.txt")
    chat_id = fake.market.chats(BUSINESS)[0].chat_id
    await client.send_file_to_chat(BUSINESS, chat_id, BytesPath())
    await client.send_file_to_chat(BUSINESS, chat_id, path.decode())
    names = [e.body["file"]["filename"] for e in fake.journal.entries("send_file_to_chat")]
    assert names == ["report.txt", "report.txt"]


# --- RateLimit ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("5",), "amount"),
        ((5.0,), "amount"),
        ((True,), "amount"),
        ((0,), "amount"),
        ((10**400,), "amount"),
        ((None,), "amount"),
        ((5, "60"), "period_seconds"),
        ((5, math.inf), "period_seconds"),
        ((5, math.nan), "period_seconds"),
        ((5, -1), "period_seconds"),
        ((5, 0), "period_seconds"),
        ((5, 1e-300), "period_seconds"),
        ((5, 10**400), "period_seconds"),
        ((5, True), "period_seconds"),
        ((5, 60, 0), "burst"),
        ((5, 60, 6), "burst"),
        ((5, 60, "2"), "burst"),
        ((5, 60, 2.0), "burst"),
        ((5, 60, True), "burst"),
    ],
)
def test_rate_limit_refuses_bad_fields(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(InvalidRequestError, match=rf"^RateLimit\.{field} must be"):
        RateLimit(*args)


# --- fuzzing: refused before any request, or sent --------------------------------

_FUZZ_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2**63 - 1, 2**63, -(2**63) - 1, 10**400, 1.0, 1.5,
    math.nan, math.inf, -0.0, 1j, "", "1", "a", "NEW", "ORDER", "CHAT", "\x00", "\r\n",
    "\udcff", "é", "текст", "a" * 5000, " ", "text/plain", "текст/plain", b"x", b"",
    bytearray(b"x"), memoryview(b"xy"), [], [1], [None], ["NEW"], [1, 1], ["NEW", "NEW"], (1,),
    {1}, {}, {1: 2}, [[1]], [1.0], [True], [2**63], object(), _MyStatus.NEW, _MyType.chat,
    [_MyStatus.NEW], [_MyType.chat], _MyId.ORDER, [_MyId.ORDER], _Text("NEW"),
    ChatContext("ORDER", 1), ChatContext(None, None),  # type: ignore[arg-type]
    [ChatContext("ORDER", 1)], [ChatContext(_MyContextType.ORDER, _MyId.ORDER)],
    [ChatContext("ORDER", True)], [ChatContext("DIRECT", 1)],  # type: ignore[arg-type]
    _NotReadable(), _NoPath(), "/no/such/file", "/", io.StringIO("text"),
]  # fmt: skip

_FUZZ_CALLS: dict[str, tuple[list[str], list[str]]] = {
    "create_chat": (["business_id"], ["order_id", "context"]),
    "get_chats": (
        ["business_id"],
        ["order_ids", "contexts", "context_types", "types", "statuses", "page_token", "limit"],
    ),
    "get_chat": (["business_id", "chat_id"], []),
    "get_chat_history": (["business_id", "chat_id"], ["message_id_from", "page_token", "limit"]),
    "get_chat_message": (["business_id", "chat_id", "message_id"], []),
    "send_message_to_chat": (["business_id", "chat_id", "message"], []),
    "send_file_to_chat": (["business_id", "chat_id", "file"], ["filename", "content_type"]),
}


_ENUM_FIELDS = ("statuses", "types", "context_types", "contexts", "context")


def _new_enum(value: Any) -> bool:
    """Whether `value` holds an enum value shaped like the spec's that some field lacks."""
    items = value if isinstance(value, list) else [value]
    kinds = [i.type if isinstance(i, ChatContext) else i for i in items]
    return any(isinstance(k, str) and k.isupper() for k in kinds)


async def test_odd_arguments_are_refused_before_any_request_or_sent(
    fake: FakeServer, make_client: Callable[..., ChatsClient]
) -> None:
    """Every argument of every operation gets every odd value above, one at a time.

    Each call either raises an InvalidRequestError naming the argument with the
    journal unchanged, or sends one request that the server takes: success,
    or an answer about the data (403 for another business, 404 for an unknown
    chat). A 400 would mean the client sent what it could have refused; only a
    page token (opaque to the client) may earn one. Any other exception is a bug.
    """
    # no client-side buckets: a thousand calls must not wait for quota
    client = make_client(max_retries=0, limits=dict.fromkeys(METHODS))
    good = {
        "business_id": BUSINESS,
        "chat_id": fake.market.chats(BUSINESS)[0].chat_id,
        "message_id": 1,
        "message": "hi",
        "file": b"x",
    }
    for method, (positional, keywords) in _FUZZ_CALLS.items():
        for field in positional + keywords:
            for value in _FUZZ_VALUES:
                if isinstance(value, io.StringIO):
                    value.seek(0)
                args = [value if p == field else good[p] for p in positional]
                kwargs = {field: value} if field in keywords else {}
                if method == "create_chat" and field != "order_id":
                    kwargs.setdefault("order_id", 1)
                case = (method, field, value)
                before = len(fake.journal)
                try:
                    await getattr(client, method)(*args, **kwargs)
                except InvalidRequestError as exc:
                    assert len(fake.journal) == before, case
                    assert field in str(exc), (*case, str(exc))
                except ApiError as exc:
                    assert len(fake.journal) == before + 1, case
                    # A page token is opaque to the client; an enum value shaped like the
                    # spec's is sent, as one the API may have added (the fake knows today's).
                    opaque = field == "page_token" or (field in _ENUM_FIELDS and _new_enum(value))
                    assert exc.status != 400 or opaque, (*case, str(exc))
                else:
                    assert len(fake.journal) == before + 1, case


_OPTION_VALUES: list[Any] = [
    None, True, 0, 1, -1, 1.5, 10**400, math.nan, math.inf, "", "1", "http://", "ftp://x",
    "http://127.0.0.1:0", "http://a..b", "http://" + "a" * 64 + ".b", "http://ex\u00a0ample.com",
    "http://a\u3002\u3002b", "http://" + "a." * 127 + "b", "http://[fe80::1%25eth0]",
    b"http://x", [], {}, {"get_chat": None}, {"get_chat": 5}, object(),
]  # fmt: skip


def test_odd_options_are_refused_or_usable() -> None:
    """Every option gets every odd value: refused naming the option, or accepted
    with a base URL whose host aiohttp can hand to getaddrinfo and TLS."""
    options = [
        "base_url", "limits", "max_concurrency", "max_retries", "timeout", "session",
        "backoff", "max_backoff", "limiter", "max_wait", "keep_alive",
    ]  # fmt: skip
    for name in options:
        for value in _OPTION_VALUES:
            try:
                client = ChatsClient(api_key="key", **{name: value})
            except InvalidRequestError as exc:
                assert name in str(exc), (name, value, str(exc))
            else:
                host = URL(client._base).raw_host
                assert host and " " not in host, (name, value)
                host.encode("idna")
