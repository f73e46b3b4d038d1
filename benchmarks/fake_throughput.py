"""Throughput of the fake server's hot path: history pages of 100 messages.

Runs the fake in a subprocess (limits off) and drives it with aiohttp from
several concurrent tasks, then prints requests/s and messages/s. The driver
shares the machine with the fake, so this is a lower bound of the fake's speed.

    python benchmarks/fake_throughput.py [--seconds 5] [--tasks 8] [--keep-alive]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import aiohttp
import msgspec

BUSINESS = 1001
LIMIT = "100"


async def drive(url: str, key: str, chat_ids: list[int], seconds: float, tasks: int) -> None:
    pages = messages = 0
    deadline = time.perf_counter() + seconds
    history = f"{url}/v2/businesses/{BUSINESS}/chats/history"

    async def walker(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal pages, messages
        while time.perf_counter() < deadline:
            params = {"chatId": str(chat_ids[index % len(chat_ids)]), "limit": LIMIT}
            index += tasks
            while time.perf_counter() < deadline:
                async with session.post(history, params=params, data=b"{}") as response:
                    result = msgspec.json.decode(await response.read())["result"]
                pages += 1
                messages += len(result["messages"])
                token = result["paging"].get("nextPageToken")
                if not token:
                    break
                params["pageToken"] = token

    connector = aiohttp.TCPConnector(limit=tasks)
    headers = {"Api-Key": key}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(walker(session, i) for i in range(tasks)))
        elapsed = time.perf_counter() - started
    print(f"{pages / elapsed:,.0f} pages/s, {messages / elapsed:,.0f} messages/s ({tasks} tasks)")


async def chats(url: str, key: str) -> list[int]:
    async with aiohttp.ClientSession(headers={"Api-Key": key}) as session:
        ids: list[int] = []
        params = {"limit": "20"}
        while True:
            async with session.post(
                f"{url}/v2/businesses/{BUSINESS}/chats", params=params, json={}
            ) as response:
                result = (await response.json())["result"]
            ids += [chat["chatId"] for chat in result["chats"]]
            if "nextPageToken" not in result["paging"]:
                return ids
            params["pageToken"] = result["paging"]["nextPageToken"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--keep-alive", action="store_true")
    args = parser.parse_args()
    command = [sys.executable, "-m", "yamarket_chats.testing", "--port", "0", "--no-limits"]
    command += ["--chats", "50", "--messages", "2000"]
    if args.keep_alive:
        command.append("--keep-alive")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ")[1].strip()
        server.stdout.readline()
        key = server.stdout.readline().split(": ", 1)[1].strip()
        chat_ids = asyncio.run(chats(url, key))
        asyncio.run(drive(url, key, chat_ids, args.seconds, args.tasks))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
