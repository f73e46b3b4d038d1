"""Garbage: a request leaves no reference cycle behind, and the CLI tunes the collector
for its own process only (the library never touches the global GC settings)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.client_proto import ResponseHandler

from tests.conftest import BUSINESS
from yamarket_chats import ChatsClient
from yamarket_chats.testing import FakeServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """Everything the collector finds from here on, kept for inspection."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def client_garbage(garbage: list[object], server_port: int) -> list[object]:
    """The garbage that is the client's: its connections' transports (whose peer is the
    fake) and protocols, and our own objects (the fake in this process makes garbage of
    its own: its transports' peer is the client)."""
    ours = []
    for item in garbage:
        module = type(item).__module__
        peer = getattr(item, "_extra", {}).get("peername") if hasattr(item, "_extra") else None
        if (
            isinstance(item, ResponseHandler)
            or (isinstance(peer, tuple) and peer[1] == server_port)
            or (module.startswith("yamarket_chats.") and "testing" not in module)
        ):
            ours.append(item)
    return ours


async def test_requests_and_failed_attempts_leave_no_cycles(
    fake: FakeServer, client: ChatsClient, saved_garbage: list[object]
) -> None:
    for _ in range(20):  # Connection: close: a new connection each
        await client.get_chats(BUSINESS)
    fake.faults.add("drop", times=2, operations=["get_chat"])  # retried, then served
    await client.get_chat(BUSINESS, fake.market.chats(BUSINESS)[0].chat_id)
    gc.collect()
    found = client_garbage(saved_garbage, int(fake.url.rsplit(":", 1)[1]))
    assert found == [], sorted({type(item).__name__ for item in found})


def test_the_cycle_breaker_still_finds_aiohttps_protocol_factory() -> None:
    """It reaches into aiohttp (a private factory); when that changes, it must be seen."""
    from yamarket_chats._transport.sessions import _BREAK_TRANSPORT_CYCLE, _Handler

    async def factory() -> object:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        from yamarket_chats._transport.sessions import _own_protocol

        _own_protocol(connector)
        made = connector._factory  # type: ignore[attr-defined]
        await connector.close()
        return made

    import asyncio

    made = asyncio.run(factory())
    if _BREAK_TRANSPORT_CYCLE:
        assert made.func is _Handler  # type: ignore[attr-defined]


def test_the_cli_tunes_the_collector_of_its_own_process_only() -> None:
    code = """
import gc, sys
from yamarket_chats.cli.app import run
before = gc.get_threshold()
run(["due", "--db", "missing.db"])  # in a host process: left alone
assert gc.get_threshold() == before and gc.get_freeze_count() == 0, gc.get_threshold()
run(["due", "--db", "missing.db"], own_process=True)  # the console script's
print(gc.get_threshold(), gc.get_freeze_count() > 0)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "(50000, 20, 10) True"


async def test_no_cycle_over_tls_either(saved_garbage: list[object]) -> None:
    """The API speaks HTTPS: the socket transport under asyncio's TLS layer is the one."""
    from yamarket_chats.testing import FakeMarketConfig, run_fake_server, self_signed_tls

    tls = self_signed_tls()
    async with run_fake_server(FakeMarketConfig(), ssl_context=tls.server_context) as fake:
        connector = aiohttp.TCPConnector(ssl=tls.client_context)  # pooling: sends copy it
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            ChatsClient(api_key=fake.api_key, base_url=fake.url, session=session) as client,
        ):
            chat = fake.market.chats(1001)[0]
            for i in range(5):  # sends: the client's own force-close copy of the TLS settings
                await client.send_message_to_chat(1001, chat.chat_id, f"over TLS {i}")
        gc.collect()
        found = client_garbage(saved_garbage, int(fake.url.rsplit(":", 1)[1]))
    assert found == [], sorted({type(item).__name__ for item in found})
