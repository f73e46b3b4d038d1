"""Metrics and health: `SyncMetrics`, `ChatsCollector`, and ``sync --metrics-port``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BUSINESS
from tests.pg_server import PostgresServer
from tests.servers import RedisServer
from tests.test_ingest import BUSINESSES, db_rows, expected
from yamarket_chats import ChatsClient, SQLiteSink, sync
from yamarket_chats.cli import endpoints
from yamarket_chats.cli.endpoints import Endpoints
from yamarket_chats.fleet.leases import LeaseLostError
from yamarket_chats.metrics import ChatsCollector, SyncMetrics
from yamarket_chats.testing import FakeServer

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sync_metrics_count_per_business_and_report_lag_from_a_clock() -> None:
    clock = Clock()
    syncs = SyncMetrics([1, 2], clock=clock)
    clock.now += 5
    syncs.business_started(1, leased=True)
    syncs.page_saved(1, 30)
    syncs.page_saved(1, 0)
    assert syncs.leases_held == 1
    clock.now += 2
    syncs.business_ended(1, None)
    syncs.business_started(2, leased=False)
    syncs.business_ended(2, RuntimeError("boom"))
    syncs.business_started(3, leased=False)  # not announced: counted from its first sync
    syncs.business_ended(3, asyncio.CancelledError())  # a shutdown is no failure
    clock.now += 10
    one, two, three = syncs.snapshot()
    assert (one.messages, one.pages, one.completed, one.failed) == (30, 2, 1, 0)
    assert one.lag_seconds == 10 and one.last_success == 1_000_007.0
    assert (two.completed, two.failed, two.last_success) == (0, 1, None)
    assert two.lag_seconds == 17  # never synced: since the object was made
    assert (three.failed, three.running, three.lag_seconds) == (0, 0, 10)
    assert syncs.leases_held == 0
    syncs.business_started(1, leased=True)
    syncs.business_ended(1, LeaseLostError("taken over"))  # not a failure: it goes on elsewhere
    syncs.restore({2: clock.now - 3, 1: 0.0})  # an older success changes nothing
    one, two, _ = syncs.snapshot()
    assert (one.failed, one.lost, one.lag_seconds) == (0, 1, 10)
    assert (two.last_success, two.lag_seconds) == (clock.now - 3, 3)


def test_a_second_collector_of_the_same_families_is_refused() -> None:
    """Two on one registry would make a scrape Prometheus rejects as a whole."""
    client = ChatsClient(api_key="k", base_url="http://127.0.0.1:9")
    registry = CollectorRegistry()
    registry.register(ChatsCollector(client, SyncMetrics()))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(ChatsCollector(client, SyncMetrics()))


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text as {family: [(labels, value), ...]} (counters keep their ``_total``)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for got, v in samples if all(got.get(k) == w for k, w in labels.items()))


async def test_the_collector_reads_the_clients_counters_and_the_syncs(
    fake: FakeServer, make_client: Callable[..., ChatsClient], tmp_path: Path
) -> None:
    fake.faults.add("status_503", times=1, operations={"get_chats"})
    client = make_client()
    syncs = SyncMetrics(BUSINESSES)
    registry = CollectorRegistry()
    registry.register(ChatsCollector(client, syncs))
    async with SQLiteSink(tmp_path / "m.db") as sink:
        report = await sync(client, BUSINESSES, sink, observer=syncs)
    found = families(generate_latest(registry).decode())
    assert all(name.startswith("yamarket_chats_") for name in found)
    requests = found["yamarket_chats_requests_total"]
    assert total(requests) == report.requests == len(fake.journal)
    assert {labels["business_id"] for labels, _ in requests} == {str(b) for b in BUSINESSES}
    assert total(found["yamarket_chats_retries_total"], method="get_chats") == 1
    assert total(found["yamarket_chats_responses_total"], status_class="5xx") == 1
    assert total(found["yamarket_chats_messages_stored_total"]) == report.messages
    for business in BUSINESSES:
        stored = len(expected(fake, [business])[1])
        assert total(found["yamarket_chats_messages_stored_total"], business_id=str(business)) == (
            stored
        )
        assert total(found["yamarket_chats_syncs_completed_total"], business_id=str(business)) == 1
    assert total(found["yamarket_chats_leases_held"]) == 0
    assert max(v for _, v in found["yamarket_chats_sync_lag_seconds"]) < 60


async def test_readyz_names_a_failing_or_silent_check_and_healthz_answers(
    make_client: Callable[..., ChatsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "CHECK_SECONDS", 0.2)
    hang = asyncio.Event()

    async def fine() -> None:
        return None

    async def refused() -> None:
        raise ConnectionRefusedError("connection refused")

    async def silent() -> None:
        await hang.wait()

    served = Endpoints(make_client(), SyncMetrics())
    url = await served.start("127.0.0.1", 0, {"sink": fine, "redis": refused, "other": silent})
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503
                body = await response.json()
            assert body["checks"]["sink"] == "ok"
            assert "connection refused" in body["checks"]["redis"]
            assert body["checks"]["other"] == "no answer within 0.2 s"
            async with http.get(f"{url}/metrics") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                assert "process_resident_memory_bytes" in await response.text()
    finally:
        await served.close()


async def start_cli(fake: FakeServer, *args: str) -> asyncio.subprocess.Process:
    base = {k: v for k, v in os.environ.items() if not k.startswith("YANDEX_MARKET_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "yamarket_chats.cli",
        "sync",
        *map(str, BUSINESSES),
        "--base-url",
        fake.url,
        *args,
        cwd=ROOT,
        env={**base, "YANDEX_MARKET_API_KEY": fake.api_key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def serving_url(proc: asyncio.subprocess.Process, seen: list[str]) -> str:
    """The URL of the "serving" line on stderr (JSON or text), keeping the lines read."""
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "".join(seen)
        seen.append(line)
        if "serving" in line:
            if line.startswith("{"):
                return str(json.loads(line)["url"])
            found = re.search(r"serving (\S+)/metrics", line)
            assert found, line
            return found.group(1)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def scrape(
    http: aiohttp.ClientSession, url: str
) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        return families(await response.text())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_follow_worker_serves_metrics_health_and_readiness_then_exits_143(
    fake: FakeServer,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    redis_server: RedisServer,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    db = tmp_path / "f.db"
    if kind == "postgres":
        sink = ["--postgres-url", request.getfixturevalue("pg_url"), "--worker"]
    else:
        sink = ["--db", str(db)]
    args = [*sink, "--follow", "--interval", "0.2", "--redis-url", redis_server.url]
    proc = await start_cli(fake, *args, "--metrics-host", "127.0.0.1", "--metrics-port", "0")
    try:
        stored = await follow_and_scrape(fake, proc, http)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    if kind == "sqlite":
        assert stored == len(db_rows(db)[1])


async def follow_and_scrape(
    fake: FakeServer, proc: asyncio.subprocess.Process, http: aiohttp.ClientSession
) -> float:
    """Probe and scrape a follow worker until each business synced twice; SIGTERM it.

    Returns the messages its metrics say it stored.
    """
    err: list[str] = []
    url = await serving_url(proc, err)
    async with http.get(f"{url}/healthz") as response:
        assert response.status == 200
    async with http.get(f"{url}/readyz") as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["checks"] == {"sink": "ok", "redis": "ok"}
    want = len(expected(fake, BUSINESSES)[1])
    for _ in range(3000):  # until every business synced twice: the worker follows
        found = await scrape(http, url)
        completed = found.get("yamarket_chats_syncs_completed_total", [])
        if len(completed) == 2 and min(v for _, v in completed) >= 2:
            break
        await asyncio.sleep(0.01)  # a poll, not a wait for time: leave the cores to the worker
    else:
        raise AssertionError(f"never synced twice: {completed}")
    assert total(found["yamarket_chats_messages_stored_total"]) == want
    for name in ("requests_total", "messages_stored_total", "sync_lag_seconds"):
        labelled = {labels["business_id"] for labels, _ in found[f"yamarket_chats_{name}"]}
        assert labelled == {str(b) for b in BUSINESSES}, name
    assert total(found["yamarket_chats_rate_limited_total"]) == 0
    proc.send_signal(signal.SIGTERM)
    _, rest = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 143, "".join(err) + rest.decode()
    return want


async def test_leases_held_counts_the_businesses_synced_under_a_lease(
    fake: FakeServer, make_client: Callable[..., ChatsClient], pg: PostgresServer
) -> None:
    from yamarket_chats.fleet import run_worker
    from yamarket_chats.sinks import PostgresSink

    class Watching(SyncMetrics):
        def __init__(self) -> None:
            super().__init__(BUSINESSES)
            self.seen: set[int] = set()

        def page_saved(self, business_id: int, messages: int) -> None:
            super().page_saved(business_id, messages)
            self.seen.add(self.leases_held)

    client = make_client()
    for run in ("plain", "worker"):
        syncs = Watching()
        async with PostgresSink(pg.create_database()) as sink:
            if run == "plain":
                await sync(client, BUSINESSES, sink, observer=syncs)
            else:
                await run_worker(client, BUSINESSES, sink, observer=syncs, max_businesses=1)
        # a plain sync claims both businesses at once; the worker, one at a time
        assert syncs.seen == {1} if run == "worker" else syncs.seen <= {1, 2} and syncs.seen, run
        assert syncs.leases_held == 0
        assert [b.completed for b in syncs.snapshot()] == [1, 1]
        if run == "worker":  # a restarted worker's lag goes on from the fleet's last sync
            from yamarket_chats.cli.commands.sync import _restore_lag

            restarted = SyncMetrics(BUSINESSES)
            async with PostgresSink(sink._dsn) as again:
                args = argparse.Namespace(business_ids=list(BUSINESSES))
                await _restore_lag(again, restarted, args)
            for before, after in zip(syncs.snapshot(), restarted.snapshot(), strict=True):
                assert after.last_success is not None and before.last_success is not None
                assert abs(after.last_success - before.last_success) < 5  # two clocks


async def test_log_format_json_writes_nothing_but_json_objects(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.faults.add("status_503", times=2, operations={"get_chats"})
    proc = await start_cli(fake, "--db", str(tmp_path / "j.db"), "--log-format", "json", "-vv")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in (out + err).decode().splitlines()]
    assert all(isinstance(line, dict) for line in lines) and len(lines) > 10
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    retried = [line for line in lines if "HTTP 503" in line["message"]]
    assert retried and all(line["method"] == "get_chats" for line in retried)
    assert {line["status"] for line in retried} == {503}
    assert {line["attempt"] for line in retried} <= {1, 2}
    assert {line["business_id"] for line in retried} <= set(BUSINESSES)
    [summary] = [json.loads(line) for line in out.decode().splitlines()]
    assert summary["messages"] == len(expected(fake, BUSINESSES)[1])
    assert fake.api_key not in (out + err).decode()


async def test_a_json_failure_is_one_json_line_without_the_key(fake: FakeServer) -> None:
    secret = "ACMA:wrong-key-1234"
    base = {k: v for k, v in os.environ.items() if not k.startswith("YANDEX_MARKET_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "yamarket_chats.cli",
        "chats",
        str(BUSINESS),
        "--base-url",
        fake.url,
        "--log-format",
        "json",
        env={**base, "YANDEX_MARKET_API_KEY": secret},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 3 and out == b""
    [line] = [json.loads(text) for text in err.decode().splitlines()]
    assert line["level"] == "ERROR" and line["exit_code"] == 3
    assert "authentication failed" in line["message"] and secret not in err.decode()


def test_json_lines_escape_what_could_break_a_line_or_drive_a_terminal() -> None:
    from yamarket_chats.cli import logs

    text = logs._json_line(
        time_=0.0,
        level=30,
        logger="x",
        message="a\nb\x1b[31m\x9b\u2028c",
        fields={"business_id": 1},
    )
    assert len(text.splitlines()) == 1 and "\x1b" not in text and "\x9b" not in text
    assert json.loads(text)["message"] == "a\nb\x1b[31m\x9b\u2028c"


async def test_metrics_port_without_the_extra_is_a_usage_error_before_any_request(
    fake: FakeServer, tmp_path: Path
) -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None;"
        "from yamarket_chats.cli import main; main()"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("YANDEX_MARKET_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "sync",
        str(BUSINESS),
        "--db",
        str(tmp_path / "x.db"),
        "--base-url",
        fake.url,
        "--metrics-port",
        "0",
        env={**base, "YANDEX_MARKET_API_KEY": fake.api_key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err.decode()
    assert "pip install 'yamarket-chats[metrics]'" in err.decode()
    assert len(fake.journal) == 0


def fleet_yaml() -> list[object]:
    """The YAML blocks of docs/fleet.md, parsed."""
    import yaml

    text = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


async def test_the_fleet_docs_name_the_families_and_a_deployment_the_cli_accepts(
    make_client: Callable[..., ChatsClient],
) -> None:
    from yamarket_chats.cli.parser import build_parser

    client = make_client()
    await client.get_chats(BUSINESS, limit=1)
    syncs = SyncMetrics([BUSINESS])
    syncs.business_started(BUSINESS, leased=True)
    syncs.business_ended(BUSINESS, None)
    emitted = {family.name for family in ChatsCollector(client, syncs).collect()}
    text = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    tabled = {
        name.removesuffix("_total")
        for name in re.findall(r"^\| `(yamarket_chats_\w+)` \|", text, re.M)
    }
    assert tabled == emitted  # the table lists every family, and only those
    rules, deployment, scrape = fleet_yaml()[-3:]  # the alerts, Kubernetes, Prometheus
    assert isinstance(rules, dict) and isinstance(deployment, dict) and isinstance(scrape, dict)
    for rule in rules["groups"][0]["rules"]:
        for name in re.findall(r"yamarket_chats_\w+", rule["expr"]):
            assert name.removesuffix("_total") in emitted, name
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert (args.worker, args.follow, args.log_format, args.metrics_port) == (
        True,
        True,
        "json",
        9464,
    )
    assert args.metrics_host == "0.0.0.0"  # probes come from outside the container
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(args.metrics_port)
    assert scrape["scrape_configs"][0]["job_name"] == "yamarket-chats"


async def test_a_metrics_port_in_use_is_a_clear_usage_error(
    make_client: Callable[..., ChatsClient],
) -> None:
    from yamarket_chats.cli.failures import UsageError

    first = Endpoints(make_client(), SyncMetrics())
    url = await first.start("127.0.0.1", 0, {})
    port = int(url.rsplit(":", 1)[1])
    try:
        second = Endpoints(make_client(), SyncMetrics())
        with pytest.raises(
            UsageError, match=rf"--metrics-port: cannot listen on 127.0.0.1:{port}: "
        ):
            await second.start("127.0.0.1", port, {})
    finally:
        await first.close()
