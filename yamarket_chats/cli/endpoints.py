"""``--metrics-port``: /metrics, /healthz and /readyz beside a sync that runs unattended.

Served by aiohttp (a dependency already) on the command's own event loop, so
that an answer from /healthz proves the loop turns: a loop held by a stuck
callback does not answer, and the probe's timeout fails it. /readyz asks
what the sync needs from outside: the sink (PostgreSQL answers ``SELECT 1``;
a file sink's directory is writable) and the shared quota's Redis (``PING``),
each within `CHECK_SECONDS`. /metrics is prometheus-client's text format of
the ``yamarket_chats_*`` families (`yamarket_chats.metrics.ChatsCollector`,
copied on the loop, formatted on a thread) and the process's own (memory,
CPU, file descriptors, GC); no global registry is touched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from ..client import ChatsClient
from ..ingest import Sink
from ..limits import Limiter
from ..metrics import SyncMetrics
from ..sinks._kind import is_sink
from .failures import UsageError

__all__ = ["CHECK_SECONDS", "Endpoints", "readiness_checks"]

#: Seconds each readiness check may take before /readyz answers 503.
CHECK_SECONDS = 2.0

Check = Callable[[], Awaitable[object]]


def readiness_checks(sink: Sink, redis: Limiter | None) -> dict[str, Check]:
    """What /readyz asks, by name: the sink and, with --redis-url, Redis (the
    limiter's `Limiter.start`, which checks its backend is usable)."""
    checks: dict[str, Check] = {"sink": _sink_check(sink)}
    if redis is not None:
        checks["redis"] = redis.start
    return checks


def _sink_check(sink: Sink) -> Check:
    if is_sink(sink, "PostgresSink"):
        query = sink.query  # type: ignore[attr-defined]
        return lambda: query("SELECT 1", doing="answer a readiness check")
    path = getattr(sink, "path", None)
    folder = Path(path).resolve().parent if path is not None else Path.cwd()

    async def writable() -> None:
        if not os.access(folder, os.W_OK):
            raise OSError(f"{folder} is not writable")

    return writable


class Endpoints:
    """The HTTP server of --metrics-port: start it before the sync, close it after."""

    def __init__(self, client: ChatsClient, syncs: SyncMetrics) -> None:
        try:
            from prometheus_client import (
                CONTENT_TYPE_LATEST,
                GC_COLLECTOR,
                PLATFORM_COLLECTOR,
                PROCESS_COLLECTOR,
                generate_latest,
            )
        except ImportError:
            raise UsageError(
                "--metrics-port needs prometheus-client: pip install 'yamarket-chats[metrics]'"
            ) from None
        from ..metrics import ChatsCollector

        collector = ChatsCollector(client, syncs)
        process = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)

        async def exposition() -> bytes:
            # Copied on the loop, formatted on a thread: thousands of businesses
            # take prometheus-client a good part of a second to format.
            frozen = _Families([collector.freeze(), *process])
            return await asyncio.to_thread(generate_latest, frozen)

        self._exposition = exposition
        self._content_type = CONTENT_TYPE_LATEST
        self._checks: dict[str, Check] = {}
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.url = ""

    async def start(self, host: str, port: int, checks: Mapping[str, Check]) -> str:
        """Listen on ``host:port`` (0: a free port); the base URL it serves.

        ``checks``: what /readyz asks, by name (`readiness_checks`).
        """
        self._checks = dict(checks)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:  # in use, a host not of this machine, a privileged port
            await self._runner.cleanup()
            reason = exc.strerror or str(exc)
            raise UsageError(f"--metrics-port: cannot listen on {host}:{port}: {reason}") from None
        bound = self._runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        return self.url

    async def close(self) -> None:
        """Stop listening."""
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self._exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = self._content_type
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        names = list(self._checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self._checks[n](), CHECK_SECONDS) for n in names),
            return_exceptions=True,
        )
        failed = {
            n: _reason(r)
            for n, r in zip(names, results, strict=True)
            if isinstance(r, BaseException)
        }
        checks = {n: failed.get(n, "ok") for n in names}
        status = 503 if failed else 200
        return web.json_response(
            {"status": "fail" if failed else "ok", "checks": checks}, status=status
        )


class _Families:
    """What ``generate_latest`` reads (a registry's ``collect``): the collectors given."""

    def __init__(self, collectors: list[Any]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self._collectors:
            yield from collector.collect()


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"no answer within {CHECK_SECONDS:g} s"
    return f"{type(error).__name__}: {error}"
