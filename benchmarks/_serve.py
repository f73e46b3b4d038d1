"""The fake in its own process for one connection mode of the throughput run.

Modes: ``close`` (every answer says ``Connection: close``, like the real API),
``keep-alive`` (the fake keeps connections open) and ``tls`` (keep-alive over
HTTPS with a throwaway CA made at start; the CA goes to a file the clients
trust through ``SSL_CERT_FILE``). ``python -m benchmarks._serve [fake options]
[--tls-ca FILE]`` is the server side; :func:`serve` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODES = ("close", "keep-alive", "tls")


@dataclass(frozen=True)
class Served:
    """A running fake: where it is, and the environment its clients need."""

    url: str
    api_key: str
    business_id: int
    pid: int
    env: dict[str, str]


@contextlib.contextmanager
def serve(mode: str, chats: int, messages: int) -> Iterator[Served]:
    """Start the fake for `mode` (limits off) and stop it when done."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        command = [sys.executable, "-m", "benchmarks._serve", "--host", "127.0.0.1", "--port", "0"]
        command += ["--no-limits", "--chats", str(chats), "--messages", str(messages)]
        env = dict(os.environ)
        if mode != "close":
            command.append("--keep-alive")
        if mode == "tls":
            ca = Path(folder, "ca.pem")
            command += ["--tls-ca", str(ca)]
            env["SSL_CERT_FILE"] = str(ca)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            if not lines[0].startswith("Fake Yandex Market"):
                raise RuntimeError(f"the fake did not start: {lines!r}")
            url = lines[0].split(" at ", 1)[1].strip()
            business = int(lines[1].split(": ", 1)[1].split(",")[0])
            key = lines[2].split(": ", 1)[1].strip()
            yield Served(url, key, business, process.pid, env)
        finally:
            process.terminate()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


async def _serve_forever(args: argparse.Namespace, context: ssl.SSLContext | None) -> None:
    from yamarket_chats.testing import run_fake_server
    from yamarket_chats.testing.__main__ import config_from_args

    config = config_from_args(args)
    async with run_fake_server(config, host=args.host, port=args.port, ssl_context=context) as fake:
        print(f"Fake Yandex Market chats API at {fake.url}", flush=True)
        print(f"Businesses: {', '.join(map(str, fake.market.businesses))}", flush=True)
        print(f"Api-Key: {fake.api_key}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    from yamarket_chats.testing.__main__ import add_arguments

    parser = argparse.ArgumentParser(prog="python -m benchmarks._serve")
    add_arguments(parser)
    parser.add_argument("--tls-ca", default=None, help="serve HTTPS; write the CA here")
    args = parser.parse_args()
    context = None
    if args.tls_ca is not None:
        from yamarket_chats.testing import self_signed_tls

        tls = self_signed_tls(("127.0.0.1",))
        Path(args.tls_ca).write_text(tls.ca_pem)
        context = tls.server_context
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args, context))


if __name__ == "__main__":
    main()
