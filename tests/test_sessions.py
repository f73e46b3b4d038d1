"""The session seam's guards: each private aiohttp attribute it reads is still there.

`yamarket_chats._transport.sessions` is the one module that touches aiohttp's
privates; each read there has a fallback, and these tests fail (rather than the
fallback silently taking over) when an aiohttp release moves one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver

from yamarket_chats._transport.sessions import Sessions, _reused, copy_for_sends, own_session


class _Resolver(aiohttp.ThreadedResolver):
    pass


async def test_aiohttp_still_has_its_silent_retry_switch_and_ours_is_off() -> None:
    plain = aiohttp.ClientSession()
    ours = own_session(aiohttp.TCPConnector(force_close=True))
    try:
        assert plain._retry_connection is True  # aiohttp's default: retries a pooled GET
        assert ours._retry_connection is False
    finally:
        await plain.close()
        await ours.close()


async def test_the_copy_for_sends_keeps_every_setting_of_the_callers_session() -> None:
    context = ssl.create_default_context()
    resolver: AbstractResolver = _Resolver()
    trace = aiohttp.TraceConfig()
    with warnings.catch_warnings():  # proxy_auth is deprecated in aiohttp 3.14, still honoured
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = aiohttp.BasicAuth("user", "pass")
        caller = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, resolver=resolver, family=socket.AF_INET),
            headers={"X-Team": "support"},
            trust_env=True,
            trace_configs=[trace],
            proxy="http://proxy.invalid:3128",
            proxy_auth=auth,
        )
    connector = caller.connector
    assert connector is not None
    # The private attributes read, as aiohttp holds them today:
    assert connector._ssl is context  # type: ignore[attr-defined]
    assert connector._resolver is resolver  # type: ignore[attr-defined]
    assert caller._default_proxy == "http://proxy.invalid:3128"
    assert caller._default_proxy_auth == auth
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        copy = copy_for_sends(caller, connector)
    try:
        made = copy.connector
        assert isinstance(made, aiohttp.TCPConnector) and made.force_close
        assert made._ssl is context  # type: ignore[attr-defined]
        assert made._resolver is resolver  # type: ignore[attr-defined]
        assert made.family == socket.AF_INET
        assert copy.headers["X-Team"] == "support" and copy.trust_env
        assert list(copy.trace_configs) == [trace]
        assert copy._default_proxy == caller._default_proxy
        assert copy._default_proxy_auth == caller._default_proxy_auth
        assert copy._retry_connection is False
    finally:
        await copy.close()
        await caller.close()


async def test_a_callers_force_close_session_carries_sends_itself() -> None:
    caller = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    sessions = Sessions(caller, keep_alive=True)
    try:
        assert sessions.pick(idempotent=False) is caller
        assert sessions.pick(idempotent=True) is caller
    finally:
        await sessions.close()
        assert not caller.closed  # never ours to close
        await caller.close()


async def test_sends_of_a_pooling_caller_go_through_one_copy_closed_with_the_client() -> None:
    caller = aiohttp.ClientSession()
    sessions = Sessions(caller, keep_alive=True)
    send = sessions.pick(idempotent=False)
    assert send is not caller and send is sessions.pick(idempotent=False)
    assert sessions.pick(idempotent=True) is caller
    await sessions.close()
    assert send.closed and not caller.closed
    await caller.close()
    with pytest.raises(Exception, match="this ChatsClient is closed"):
        sessions.check_open()


async def test_reads_pool_and_sends_never_do() -> None:
    sessions = Sessions(None, keep_alive=True)
    read, send = sessions.pick(idempotent=True), sessions.pick(idempotent=False)
    assert read is not send
    assert read.connector is not None and not read.connector.force_close
    assert send.connector is not None and send.connector.force_close
    await sessions.close()
    closing = Sessions(None, keep_alive=False)
    assert closing.pick(idempotent=True) is closing.pick(idempotent=False)
    await closing.close()


def _refused() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))


async def test_only_a_reused_pooled_connection_dropped_by_the_server_is_stale() -> None:
    sessions = Sessions(None, keep_alive=True)
    try:
        pooled, fresh = sessions.pick(True), sessions.fresh()
        assert pooled is not fresh
        dropped = aiohttp.ServerDisconnectedError()
        sessions.begin(pooled)  # a new connection until the connector says it reused one
        assert not sessions.stale(pooled, dropped)
        _reused.set(True)
        assert sessions.stale(pooled, dropped)
        assert sessions.stale(pooled, aiohttp.ClientOSError())
        assert not sessions.stale(pooled, _refused())  # never connected: not a stale socket
        assert not sessions.stale(pooled, asyncio.TimeoutError())  # the server may have it
        assert not sessions.stale(fresh, dropped)  # a fresh connection is never stale
        sessions.begin(pooled)
        assert not sessions.stale(pooled, dropped)  # begin forgets the last request's
    finally:
        await sessions.close()


async def test_reads_leave_the_pool_after_a_streak_of_connection_close_and_probe_it_again() -> None:
    sessions = Sessions(None, keep_alive=True)
    try:
        pooled = sessions.pick(True)
        closing = {"Connection": "close"}
        for _ in range(7):
            sessions.answered(pooled, closing)
        assert sessions.pick(True) is pooled  # 7 in a row: not yet
        sessions.answered(pooled, closing)
        picks = [sessions.pick(True) for _ in range(128)]
        assert picks.count(pooled) == 2  # every 64th read probes the pool again
        assert picks[63] is pooled and picks[127] is pooled
        sessions.answered(pooled, {"Connection": "keep-alive"})  # the probe was kept open
        assert sessions.pick(True) is pooled
        sessions.answered(sessions.fresh(), closing)  # fresh answers do not count
        assert sessions.pick(True) is pooled
        assert sessions.pick(False) is sessions.fresh()  # a send never takes the pool
    finally:
        await sessions.close()
