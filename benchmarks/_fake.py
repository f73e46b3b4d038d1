"""The fake Market API in its own process, and the generated OpenAPI client."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "tests" / "spec" / "chats-openapi.yaml"
GENERATED_PACKAGE = "market_chats_generated"
# The spec's title is Cyrillic, so without overrides the package name would be
# too; no post hooks, so generation does not depend on ruff being on PATH.
GENERATOR_CONFIG = f"""\
project_name_override: market-chats-generated
package_name_override: {GENERATED_PACKAGE}
post_hooks: []
"""


@dataclass(frozen=True)
class Fake:
    url: str
    api_key: str
    business_id: int
    pid: int


@contextlib.contextmanager
def fake_server(chats: int, messages: int, *extra: str, limits: bool = False) -> Iterator[Fake]:
    """``python -m yamarket_chats.testing`` on a free loopback port, limits off.

    With `limits`, the fake keeps quotas and the parallel cap of 4, and sends
    its ``X-RateLimit-Resource-*`` headers on every answer, as the API does;
    its windows last one second, so its hourly quotas never throttle a run.
    """
    command = [sys.executable, "-m", "yamarket_chats.testing", "--host", "127.0.0.1"]
    command += ["--port", "0", "--chats", str(chats), "--messages", str(messages)]
    command += ["--quota-window", "1"] if limits else ["--no-limits"]
    command += list(extra)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        if not lines[0].startswith("Fake Yandex Market"):
            raise RuntimeError(f"the fake did not start: {lines!r}")
        url = lines[0].split(" at ", 1)[1].strip()
        business = int(lines[1].split(": ", 1)[1].split(",")[0])
        key = lines[2].split(": ", 1)[1].strip()
        yield Fake(url, key, business, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def generate_client(folder: Path) -> tuple[Path, str]:
    """Generate the OpenAPI client of the spec into ``folder``; (import path, tool output)."""
    config = folder / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    output = folder / "client"
    command = [sys.executable, "-m", "openapi_python_client", "generate"]
    command += ["--path", str(SPEC), "--output-path", str(output), "--config", str(config)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    log = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or not (output / GENERATED_PACKAGE).is_dir():
        raise RuntimeError(f"openapi-python-client failed:\n{log}")
    return output, log
