"""A notification receiver storing events into a sink, in a process of its own (SIGKILL tests).

Usage: python -m tests.notify_receiver BASE_URL KEY (--db PATH | --postgres-url URL)

Serves ``POST /notification`` on a free loopback port, prints its URL on
one line, and stores every chat event with `into_sink` until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from yamarket_chats import ChatsClient
from yamarket_chats.notifications import NotificationFetcher, add_notification_route, into_sink
from yamarket_chats.sinks import SQLiteSink


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--db")
    parser.add_argument("--postgres-url")
    parser.add_argument("--business", type=int, action="append", required=True)
    args = parser.parse_args(argv)
    if args.postgres_url:
        from yamarket_chats.sinks import PostgresSink

        sink: SQLiteSink | PostgresSink = PostgresSink(args.postgres_url)
    else:
        sink = SQLiteSink(args.db, lock_timeout=30)
    async with ChatsClient(api_key=args.key, base_url=args.url) as client, sink:
        fetcher = NotificationFetcher(client, business_ids=args.business)
        app = web.Application()
        add_notification_route(
            app, "/notification", into_sink(sink, fetcher), name="test", version="1"
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"http://{host}:{port}/notification", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
