"""The desk's MCP server: its tools through the SDK's in-memory client, and once over stdio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import pytest_asyncio
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext

from tests.conftest import BUSINESS
from tests.waiting import until
from yamarket_chats import ChatsClient
from yamarket_chats.desk import waiting_chats
from yamarket_chats.desk.mcp import REPEAT_SECONDS, build_server
from yamarket_chats.desk.mcp._outputs import SendResult
from yamarket_chats.desk.mcp._sending import Sends
from yamarket_chats.ingest import sync
from yamarket_chats.sinks import SQLiteSink
from yamarket_chats.testing import FakeMarketConfig, FakeServer, run_fake_server

ROOT = Path(__file__).resolve().parent.parent
CONFIG = FakeMarketConfig(businesses=(BUSINESS,), chats_per_business=8, messages_per_chat=60)
MODES = ["auto", "legacy"]  # the stateless protocol (2026-07-28) and the one before it

Answer = Callable[[types.ElicitRequestFormParams], Awaitable[types.ElicitResult]]


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with run_fake_server(CONFIG) as server:
        yield server


@pytest_asyncio.fixture
async def synced(fake: FakeServer, client: ChatsClient, tmp_path: Path) -> Path:
    path = tmp_path / "chats.db"
    async with SQLiteSink(path) as sink:
        await sync(client, [BUSINESS], sink)
    return path


class Human:
    """Answers the confirmations: records each question, then answers as told."""

    def __init__(self, action: str = "accept", send: bool = True) -> None:
        self.action, self.send = action, send
        self.questions: list[types.ElicitRequestFormParams] = []
        self.hold: asyncio.Event | None = None  # set: never answer
        self.asked = asyncio.Event()

    async def __call__(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.questions.append(params)
        self.asked.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.action == "accept":
            return types.ElicitResult(action="accept", content={"send": self.send})
        return types.ElicitResult(action=self.action)  # type: ignore[arg-type]


def sends(fake: FakeServer) -> list[Any]:
    return fake.journal.entries("send_message_to_chat")


def partner_texts(fake: FakeServer, chat_id: int) -> list[str | None]:
    return [m.message for m in fake.market.messages(BUSINESS, chat_id) if m.sender == "PARTNER"]


def structured(result: types.CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def test_lists_three_tools_for_a_model(client: ChatsClient, synced: Path) -> None:
    async with Client(build_server(synced, client)) as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert "send_reply" in mcp.instructions
    assert set(tools) == {"list_waiting_chats", "read_chat", "send_reply"}
    for tool in tools.values():
        assert tool.output_schema is not None  # structured outputs
        assert len(tool.description or "") > 200  # written for a model
    assert tools["list_waiting_chats"].annotations.read_only_hint  # type: ignore[union-attr]
    assert tools["read_chat"].annotations.read_only_hint  # type: ignore[union-attr]
    assert set(tools["read_chat"].input_schema["required"]) == {"business_id", "chat_id"}
    assert set(tools["send_reply"].input_schema["properties"]) == {"business_id", "chat_id", "text"}


@pytest.mark.parametrize("mode", MODES)
async def test_lists_the_queue_and_reads_a_chat(
    fake: FakeServer, client: ChatsClient, synced: Path, mode: str
) -> None:
    queue = await waiting_chats(synced)
    async with Client(build_server(synced, client), mode=mode) as mcp:  # type: ignore[arg-type]
        listed = structured(await mcp.call_tool("list_waiting_chats", {}))
        assert [c["chat_id"] for c in listed["chats"]] == [c.chat_id for c in queue]
        assert listed["total"] == len(queue)
        first = listed["chats"][0]
        assert first["last_message"] == queue[0].last_message
        assert first["waited_minutes"] > 0
        assert (
            structured(await mcp.call_tool("list_waiting_chats", {"business_id": 999}))["chats"]
            == []
        )
        chat = structured(
            await mcp.call_tool("read_chat", {"business_id": BUSINESS, "chat_id": first["chat_id"]})
        )
        expected = list(fake.market.messages(BUSINESS, first["chat_id"]))[-50:]
        assert [m["message_id"] for m in chat["messages"]] == [m.message_id for m in expected]
        assert chat["earlier_messages"] is True
        assert "does not exist" in error_text(
            await mcp.call_tool("read_chat", {"business_id": BUSINESS, "chat_id": 999_999_999})
        )


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_refuses_and_asks_nobody(
    fake: FakeServer, client: ChatsClient, synced: Path, mode: str
) -> None:
    human = Human()
    server = build_server(synced, client)
    async with Client(server, mode=mode, elicitation_callback=human) as mcp:  # type: ignore[arg-type]
        chat_id = fake.market.chats(BUSINESS)[0].chat_id
        args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Hello"}
        assert "read-only" in error_text(await mcp.call_tool("send_reply", args))
    assert human.questions == [] and sends(fake) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("action", "send"), [("decline", True), ("cancel", True), ("accept", False)]
)
async def test_nothing_is_sent_without_an_explicit_accept(
    fake: FakeServer, client: ChatsClient, synced: Path, mode: str, action: str, send: bool
) -> None:
    human = Human(action, send)
    chat_id = (await waiting_chats(synced))[0].chat_id
    server = build_server(synced, client, allow_send=True)
    async with Client(server, mode=mode, elicitation_callback=human) as mcp:  # type: ignore[arg-type]
        args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Not this"}
        result = structured(await mcp.call_tool("send_reply", args))
    assert (result["sent"], result["outcome"]) == (
        False, "cancelled" if action == "cancel" else "declined"
    )  # fmt: skip
    assert len(human.questions) == 1 and sends(fake) == []


@pytest.mark.parametrize("mode", MODES)
async def test_an_accepted_send_sends_exactly_once_however_often_it_is_repeated(
    fake: FakeServer, client: ChatsClient, synced: Path, mode: str
) -> None:
    human = Human()
    waiting = (await waiting_chats(synced))[0]
    server = build_server(synced, client, allow_send=True)
    text = "Здравствуйте! Заказ передан в доставку,\nтрек придёт сегодня."  # noqa: RUF001
    args = {"business_id": BUSINESS, "chat_id": waiting.chat_id, "text": text}
    async with Client(server, mode=mode, elicitation_callback=human) as mcp:  # type: ignore[arg-type]
        result = structured(await mcp.call_tool("send_reply", args))
        assert (result["sent"], result["outcome"]) == (True, "sent")
        again = [structured(await mcp.call_tool("send_reply", args)) for _ in range(3)]
    assert {(r["sent"], r["outcome"]) for r in again} == {(False, "already_sent")}
    assert len(sends(fake)) == 1
    assert partner_texts(fake, waiting.chat_id)[-1] == text
    (question,) = human.questions  # the repeats asked nobody
    shown = question.message
    assert text in shown and str(waiting.chat_id) in shown
    assert waiting.last_message is not None and waiting.last_message in shown  # the buyer's
    assert question.requested_schema["properties"]["send"]["type"] == "boolean"


@pytest.mark.parametrize("mode", MODES)
async def test_concurrent_repeats_send_once(
    fake: FakeServer, client: ChatsClient, synced: Path, mode: str
) -> None:
    human = Human()
    chat_id = (await waiting_chats(synced))[0].chat_id
    server = build_server(synced, client, allow_send=True)
    args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Once"}
    async with Client(server, mode=mode, elicitation_callback=human) as mcp:  # type: ignore[arg-type]
        results = await asyncio.gather(*(mcp.call_tool("send_reply", args) for _ in range(4)))
    outcomes = sorted(structured(r)["outcome"] for r in results)
    assert outcomes.count("sent") == 1 and len(sends(fake)) == 1


async def test_the_repeat_window_ends(fake: FakeServer, client: ChatsClient, synced: Path) -> None:
    """Within the window a repeat is answered from memory (no request); after it, the chat
    is read again, and still answers it."""
    now = [1000.0]
    human = Human()
    chat_id = (await waiting_chats(synced))[0].chat_id
    server = build_server(synced, client, allow_send=True, clock=lambda: now[0])
    args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Спасибо!"}
    async with Client(server, elicitation_callback=human) as mcp:
        assert structured(await mcp.call_tool("send_reply", args))["sent"]
        now[0] += REPEAT_SECONDS - 1
        fake.journal.clear()
        assert structured(await mcp.call_tool("send_reply", args))["outcome"] == "already_sent"
        assert len(fake.journal) == 0  # from memory
        now[0] += 1
        late = structured(await mcp.call_tool("send_reply", args))
        assert (late["outcome"], "in the chat" in late["detail"]) == ("already_sent", True)
        assert [e.operation for e in fake.journal] == ["get_chat_history"]
    assert len(human.questions) == 1
    assert partner_texts(fake, chat_id).count("Спасибо!") == 1


@pytest.mark.parametrize("mode", MODES)
async def test_an_unanswered_or_impossible_question_sends_nothing(
    fake: FakeServer, client: ChatsClient, synced: Path, mode: str
) -> None:
    chat_id = (await waiting_chats(synced))[0].chat_id
    server = build_server(synced, client, allow_send=True)
    args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Hello"}
    human = Human()
    human.hold = asyncio.Event()  # the human never answers
    async with Client(server, mode=mode, elicitation_callback=human) as mcp:  # type: ignore[arg-type]
        call = asyncio.ensure_future(mcp.call_tool("send_reply", args))
        await asyncio.wait_for(human.asked.wait(), 30)  # asked ...
        call.cancel()  # ... and the client gives up
        with pytest.raises(asyncio.CancelledError):
            await call
    async with Client(server, mode=mode) as mcp:  # type: ignore[arg-type]
        # A client that cannot ask its human: an error, not a send.
        with pytest.raises(Exception, match="elicitation"):
            result = await mcp.call_tool("send_reply", args)
            raise AssertionError(error_text(result))  # (if the SDK reports it as a tool error)
    assert sends(fake) == []


@pytest.mark.parametrize(
    ("text", "named"),
    [("", "text must be a string of 1..4096 characters"), ("x" * 4097, "got 4097")],
)
async def test_a_bad_text_is_refused_before_anyone_is_asked(
    fake: FakeServer, client: ChatsClient, synced: Path, text: str, named: str
) -> None:
    human = Human()
    server = build_server(synced, client, allow_send=True)
    args = {"business_id": BUSINESS, "chat_id": 1, "text": text}
    async with Client(server, elicitation_callback=human) as mcp:
        assert named in error_text(await mcp.call_tool("send_reply", args))
    assert human.questions == [] and sends(fake) == []


@pytest.mark.parametrize("fault", ["drop_after", "status_500_after"])
async def test_a_send_that_arrived_unanswered_is_found_in_the_chat_not_sent_again(
    fake: FakeServer, client: ChatsClient, synced: Path, fault: str
) -> None:
    human = Human()
    chat_id = (await waiting_chats(synced))[0].chat_id
    server = build_server(synced, client, allow_send=True)
    args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Maybe"}
    fake.faults.add(fault, times=1, operations=["send_message_to_chat"])
    async with Client(server, elicitation_callback=human) as mcp:
        first = structured(await mcp.call_tool("send_reply", args))
        assert (first["sent"], first["outcome"]) == (False, "uncertain")
        assert "read_chat" in first["detail"]
        second = structured(await mcp.call_tool("send_reply", args))
    assert (second["sent"], second["outcome"]) == (False, "already_sent")
    assert "in the chat" in second["detail"]
    assert partner_texts(fake, chat_id).count("Maybe") == 1  # the API did act, once
    assert len(human.questions) == 1  # the repeat asked nobody


async def test_a_send_that_did_not_arrive_is_asked_again_saying_so(
    fake: FakeServer, client: ChatsClient, synced: Path
) -> None:
    human = Human()
    chat_id = (await waiting_chats(synced))[0].chat_id
    server = build_server(synced, client, allow_send=True)
    args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Second try"}
    fake.faults.add("status_500", times=1, operations=["send_message_to_chat"])  # not acted
    async with Client(server, elicitation_callback=human) as mcp:
        assert structured(await mcp.call_tool("send_reply", args))["outcome"] == "uncertain"
        assert structured(await mcp.call_tool("send_reply", args))["outcome"] == "sent"
    first, second = human.questions
    assert "may or may not have arrived" in second.message
    assert "may or may not" not in first.message
    assert partner_texts(fake, chat_id).count("Second try") == 1


async def test_another_server_finds_the_reply_in_the_chat(
    fake: FakeServer, client: ChatsClient, synced: Path
) -> None:
    """A stdio server is one process per client session: the chat is the shared memory."""
    human = Human()
    chat_id = (await waiting_chats(synced))[0].chat_id
    args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Bye"}
    for _ in range(2):
        server = build_server(synced, client, allow_send=True)
        async with Client(server, elicitation_callback=human) as mcp:
            last = structured(await mcp.call_tool("send_reply", args))
    assert last["outcome"] == "already_sent"
    assert len(human.questions) == 1 and partner_texts(fake, chat_id).count("Bye") == 1
    fake.market.add_message(BUSINESS, chat_id, "Bye?")  # the buyer writes again:
    async with Client(build_server(synced, client, allow_send=True),
                      elicitation_callback=human) as mcp:  # fmt: skip
        assert structured(await mcp.call_tool("send_reply", args))["outcome"] == "sent"
    assert len(human.questions) == 2  # the same words answer a new message


@pytest.mark.parametrize("mode", MODES)
async def test_a_send_cancelled_midway_is_never_sent_twice(
    fake: FakeServer, client: ChatsClient, synced: Path, mode: str
) -> None:
    human = Human()
    chat_id = (await waiting_chats(synced))[0].chat_id
    server = build_server(synced, client, allow_send=True)
    args = {"business_id": BUSINESS, "chat_id": chat_id, "text": "Slow"}
    fake.faults.add("latency", times=1, delay=0.5, operations=["send_message_to_chat"])
    async with Client(server, mode=mode, elicitation_callback=human) as mcp:  # type: ignore[arg-type]
        call = asyncio.ensure_future(mcp.call_tool("send_reply", args))
        await until(lambda: sends(fake))  # the send is on its way ...
        call.cancel()  # ... when the client gives up
        with contextlib.suppress(asyncio.CancelledError):
            await call
        await until(lambda: "Slow" in partner_texts(fake, chat_id))  # the API acts all the same
        again = structured(await mcp.call_tool("send_reply", args))
    assert again["outcome"] == "already_sent"
    assert partner_texts(fake, chat_id).count("Slow") == 1 and len(human.questions) == 1


def test_the_send_memory_forgets_locks_and_keeps_the_newest() -> None:
    sends = Sends(clock=lambda: 0.0)
    key = sends.key(1, 2, "x")

    async def use() -> None:
        async with sends.holding(key), sends.holding(sends.key(1, 2, "y")):
            assert len(sends._locks) == 2
        assert sends._locks == {}

    asyncio.run(use())
    assert sends.sent(key) is None and not sends.uncertain(key)
    sends.record(key, SendResult(sent=True, outcome="sent", detail=""))
    assert sends.sent(key) is not None


def test_what_counts_as_maybe_arrived() -> None:
    import aiohttp

    from yamarket_chats import ServerError, TransportError
    from yamarket_chats.desk.mcp._sending import _may_have_arrived

    where = {"method": "send_message_to_chat", "business_id": 1}
    refused = TransportError("connect refused", **where)
    refused.__cause__ = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        OSError(111, "refused"),
    )
    lost = TransportError("lost", **where)
    lost.__cause__ = aiohttp.ServerDisconnectedError()
    assert not _may_have_arrived(refused)
    assert not _may_have_arrived(TransportError("not even sent", **where))
    assert _may_have_arrived(lost)
    assert _may_have_arrived(ServerError(500, [], **where))


async def test_a_jsonl_sink_is_refused(client: ChatsClient, tmp_path: Path) -> None:
    from yamarket_chats import InvalidRequestError
    from yamarket_chats.sinks import JsonlSink

    async with JsonlSink(tmp_path / "c.jsonl") as jsonl:
        with pytest.raises(InvalidRequestError, match="JSON Lines"):
            build_server(jsonl, client)  # type: ignore[arg-type]


def cli_env(fake: FakeServer) -> dict[str, str]:
    return {
        **os.environ,
        "YANDEX_MARKET_API_KEY": fake.api_key,
        "YANDEX_MARKET_BASE_URL": fake.url,
    }


def stdio(fake: FakeServer, *args: str) -> StdioServerParameters:
    command = [sys.executable, "-m", "yamarket_chats", "mcp", *args]
    return StdioServerParameters(
        command=command[0], args=command[1:], cwd=str(ROOT), env=cli_env(fake)
    )


async def test_over_stdio_reads_refuses_and_sends_once_on_accept(
    fake: FakeServer, synced: Path
) -> None:
    """The done-when of the issue, through `yamarket-chats mcp` as a subprocess."""
    waiting = (await waiting_chats(synced))[0]
    chat = {"business_id": BUSINESS, "chat_id": waiting.chat_id}
    human = Human()
    async with Client(stdio(fake, "--db", str(synced)), elicitation_callback=human) as mcp:
        tools = {t.name for t in (await mcp.list_tools()).tools}
        assert tools == {"list_waiting_chats", "read_chat", "send_reply"}
        read = structured(await mcp.call_tool("read_chat", chat))
        expected = list(fake.market.messages(BUSINESS, waiting.chat_id))[-50:]
        assert [m["message_id"] for m in read["messages"]] == [m.message_id for m in expected]
        assert "read-only" in error_text(await mcp.call_tool("send_reply", {**chat, "text": "x"}))
    assert sends(fake) == [] and human.questions == []

    params = stdio(fake, "--db", str(synced), "--allow-send")
    declining = Human("decline")
    async with Client(params, elicitation_callback=declining) as mcp:
        result = structured(await mcp.call_tool("send_reply", {**chat, "text": "No"}))
        assert result["outcome"] == "declined"
    assert sends(fake) == [] and len(declining.questions) == 1
    async with Client(params, elicitation_callback=human) as mcp:
        result = structured(await mcp.call_tool("send_reply", {**chat, "text": "Yes"}))
        assert result["outcome"] == "sent"
    assert len(sends(fake)) == 1 and partner_texts(fake, waiting.chat_id)[-1] == "Yes"


async def test_over_http_and_a_sigint_ends_it(fake: FakeServer, synced: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yamarket_chats", "mcp", "--db", str(synced),
        "--http", "127.0.0.1:0", cwd=ROOT, env=cli_env(fake),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
    url = re.search(r"http://\S+/mcp", line)
    assert url is not None, line
    async with Client(url.group()) as mcp:
        assert len((await mcp.list_tools()).tools) == 3
        listed = structured(await mcp.call_tool("list_waiting_chats", {}))
        assert listed["total"] == len(await waiting_chats(synced))
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 130
    assert proc.returncode == 130


def test_a_port_in_use_and_a_bad_address_are_usage_errors(fake: FakeServer, synced: Path) -> None:
    import socket
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for address, said in [
            (f"127.0.0.1:{port}", "cannot listen there"),
            ("nohost", "HOST:PORT"),
        ]:
            done = subprocess.run(
                [sys.executable, "-m", "yamarket_chats", "mcp", "--db", str(synced), "--http",
                 *address.split()], env=cli_env(fake), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert said in done.stderr
