"""The "Retries" table of docs/limits.md, row by row, against the pure retry rules.

`classify` names what an attempt came to and `decide` says what the call does
next; together they are the whole retry policy of the request loop.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from yamarket_chats._transport.retry import (
    Action,
    Answer,
    Decision,
    Kind,
    Outcome,
    Policy,
    Tries,
    classify,
    decide,
)
from yamarket_chats.errors import (
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    TransportError,
)
from yamarket_chats.models import Chat, _Envelope

POLICY = Policy(timeout=15.0, max_retries=5, max_wait=60.0, backoff=0.5, max_backoff=60.0)
READ = msgspec.json.Decoder(_Envelope[Chat])
CHAT = (
    b'{"status":"OK","result":{"chatId":1,"context":{"type":"ORDER","orderId":2},'
    b'"type":"CHAT","status":"NEW","createdAt":"2026-01-01T00:00:00+03:00",'
    b'"updatedAt":"2026-01-01T00:00:00+03:00"}}'
)
ERROR_420 = b'{"status":"ERROR","errors":[{"code":"TOO_MANY_REQUESTS","message":"slow down"}]}'


def _connector_error() -> aiohttp.ClientConnectorError:
    key: Any = type("Key", (), {"ssl": None, "host": "127.0.0.1", "port": 9})()
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))


def answer(
    status: int | None = None,
    raw: bytes = b"",
    *,
    error: BaseException | None = None,
    stale: bool = False,
    cut_short: bool = False,
    reset_in: float = 0.0,
) -> Answer:
    return Answer(status, raw, None, error, stale, cut_short, reset_in, 0.01)


def outcome_of(got: Answer, *, read: bool) -> Outcome:
    return classify(
        got, method="get_chat", business_id=1001, decoder=READ if read else None, max_wait=60.0
    )


NO_TRIES = Tries()


def run(
    got: Answer, *, read: bool, tries: Tries = NO_TRIES, policy: Policy = POLICY, **when: Any
) -> tuple[Outcome, Decision]:
    outcome = outcome_of(got, read=read)
    options: dict[str, Any] = {"deadline": None, "now": 0.0, "jitter": 0.5, **when}
    return outcome, decide(outcome, tries, policy, idempotent=read, **options)


# One row of the table per case: what happened, then what reads and sends do.
# "backoff" is a retry after a delay > 0; "at once" a retry with none;
# "requeue" goes again through the limiter (which waits for -Until).
TABLE = [
    ("420, quota spent", answer(420, ERROR_420, reset_in=30.0), "requeue", "requeue"),
    ("420, quota left (the parallel cap)", answer(420, ERROR_420), "backoff", "backoff"),
    ("420 without headers", answer(420, b""), "backoff", "backoff"),
    ("5xx", answer(503, b""), "backoff", ServerError),
    ("timeout", answer(error=asyncio.TimeoutError()), "backoff", TransportError),
    (
        "dropped connection",
        answer(error=aiohttp.ServerDisconnectedError()),
        "backoff",
        TransportError,
    ),
    ("a 2xx whose body is not JSON", answer(200, b"{not json"), "backoff", "done"),
    (
        "a 2xx whose JSON does not fit the spec",
        answer(200, b'{"status":"OK"}'),
        ResponseDecodeError,
        "done",
    ),
    (
        "a pooled connection the server had closed",
        answer(error=aiohttp.ServerDisconnectedError(), stale=True),
        "at once",
        None,
    ),
    ("connection refused (never sent)", answer(error=_connector_error()), "backoff", "backoff"),
    ("other 4xx: 400", answer(400, b""), BadRequestError, BadRequestError),
    ("other 4xx: 404", answer(404, b""), NotFoundError, NotFoundError),
]


# The table's rows, by their first cell, and the rows of TABLE that stand for each.
README_ROWS = {
    "420, quota spent (`-Remaining: 0`)": ["420, quota spent"],
    "420, quota left (the parallel cap) or no headers": [
        "420, quota left (the parallel cap)",
        "420 without headers",
    ],
    "5xx": ["5xx"],
    "timeout, dropped connection": ["timeout", "dropped connection"],
    "a 2xx whose body is not JSON (a proxy's page)": ["a 2xx whose body is not JSON"],
    "a 2xx whose JSON does not fit the spec": ["a 2xx whose JSON does not fit the spec"],
    "a pooled connection the server had closed": ["a pooled connection the server had closed"],
    "connection refused (never sent)": ["connection refused (never sent)"],
    "other 4xx": ["other 4xx: 400", "other 4xx: 404"],
}


def _readme_table() -> list[list[str]]:
    text = (Path(__file__).parent.parent / "docs" / "limits.md").read_text(encoding="utf-8")
    section = text.split("## Retries", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def _said(cell: str, reads: object) -> object:
    """What a cell of README's table says the call does, in TABLE's words."""
    if cell == "same":
        return reads
    if cell.startswith("wait until `-Until`"):
        return "requeue"
    if cell.startswith("back off"):
        return "backoff"
    if cell.startswith("again at once"):
        return "at once"
    if cell.startswith("return"):
        return "done"
    if cell.startswith("never happens"):
        return None
    named = re.fullmatch(r"raise `(\w+)`", cell)
    return named.group(1) if named else cell


def _kind(expected: object) -> object:
    """TABLE's expectation as README words it: an error by name, a 4xx as a bare raise."""
    if expected in (BadRequestError, NotFoundError):
        return "raise"
    return expected.__name__ if isinstance(expected, type) else expected


def test_the_table_here_is_readmes_table() -> None:
    by_case = {row[0]: row for row in TABLE}
    readme = _readme_table()
    assert [row[0] for row in readme] == list(README_ROWS)  # a new row needs its cases here
    assert sorted(c for cases in README_ROWS.values() for c in cases) == sorted(by_case)
    for what, reads_cell, sends_cell in readme:
        reads = _said(reads_cell, None)
        for case in README_ROWS[what]:
            _, _, expected_reads, expected_sends = by_case[case]
            assert _kind(expected_reads) == reads, (case, reads_cell)
            assert _kind(expected_sends) == _said(sends_cell, reads), (case, sends_cell)


def _check(expected: object, outcome: Outcome, decision: Decision) -> None:
    if expected == "requeue":
        assert decision.action is Action.REQUEUE and decision.delay == 0
        assert decision.tries.limited == 1
    elif expected == "backoff":
        assert decision.action is Action.RETRY and decision.delay > 0
        # A 420 spends the 420s' budget, any other failure the failures' budget.
        spent = Tries(limited=1) if outcome.kind.startswith("420") else Tries(failures=1)
        assert decision.tries == spent
    elif expected == "at once":
        assert decision.action is Action.RETRY and decision.delay == 0
        assert decision.tries == Tries()  # not a failure: spends no budget
    elif expected == "done":
        assert decision.action is Action.DONE
    else:
        assert isinstance(expected, type)
        assert decision.action is Action.RAISE
        assert isinstance(outcome.error, expected)


@pytest.mark.parametrize(("case", "got", "reads", "sends"), TABLE, ids=[row[0] for row in TABLE])
def test_each_row_of_the_retries_table(
    case: str, got: Answer, reads: object, sends: object
) -> None:
    outcome, decision = run(got, read=True)
    _check(reads, outcome, decision)
    if sends is None:
        return  # a send never takes a pooled connection: the case cannot arise
    outcome, decision = run(got, read=False)
    _check(sends, outcome, decision)


def test_a_read_returns_the_decoded_result_and_a_send_returns_nothing() -> None:
    outcome, decision = run(answer(200, CHAT), read=True)
    assert decision.action is Action.DONE and outcome.result.chat_id == 1
    outcome, decision = run(answer(200, b""), read=False)
    assert decision.action is Action.DONE and outcome.result is None


def test_a_2xx_carrying_an_error_envelope_is_a_refusal_for_reads_and_sends() -> None:
    refusal = b'{"status":"ERROR","errors":[{"code":"BAD","message":"no"}]}'
    for read in (True, False):
        outcome, decision = run(answer(200, refusal), read=read)
        assert decision.action is Action.RAISE and outcome.kind == Kind.REFUSED


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"status":"OK"}', "$.result"),  # an OK envelope without its result
        (b'{"status":"OK","result":{"chatId":1}}', "$.result.context"),
        (CHAT.replace(b"T00:00:00+03:00", b"T25:00:00+03:00", 1), "$.result.createdAt"),
    ],
)
def test_a_2xx_that_cannot_be_decoded_is_raised_at_once_naming_the_field(
    raw: bytes, path: str | None
) -> None:
    outcome, decision = run(answer(200, raw), read=True, tries=NO_TRIES)
    assert outcome.kind == Kind.UNDECODABLE and decision.action is Action.RAISE
    assert isinstance(outcome.error, ResponseDecodeError)
    assert outcome.error.path == path
    assert "not retried" in str(outcome.error)


def test_a_2xx_that_is_not_json_is_a_failure_with_no_field_to_name() -> None:
    outcome, decision = run(answer(200, b"<html>502</html>"), read=True, tries=NO_TRIES)
    assert outcome.kind == Kind.UNREADABLE and decision.action is Action.RETRY
    assert isinstance(outcome.error, ResponseDecodeError) and outcome.error.path is None
    assert "502" not in str(outcome.error)  # (the body is never quoted)


def test_failures_are_retried_max_retries_times_then_raised() -> None:
    spent = Tries(failures=POLICY.max_retries)
    _, decision = run(answer(503, b""), read=True, tries=spent)
    assert decision.action is Action.RAISE
    _, decision = run(answer(503, b""), read=True, tries=Tries(failures=4))
    assert decision.action is Action.RETRY and decision.tries == Tries(failures=5)


def test_420s_have_their_own_budget_of_twice_max_retries() -> None:
    tries = Tries(failures=5, limited=9)  # failures spent: 420s still retried
    _, decision = run(answer(420, ERROR_420), read=True, tries=tries)
    assert decision.action is Action.RETRY and decision.tries.limited == 10
    _, decision = run(answer(420, ERROR_420), read=True, tries=Tries(limited=10))
    assert decision.action is Action.RAISE and decision.note == "retries used up; giving up"
    _, decision = run(answer(420, ERROR_420, reset_in=5.0), read=True, tries=Tries(limited=10))
    assert decision.action is Action.RAISE and decision.note == "free again in 5.0 s; giving up"


def test_max_retries_zero_turns_every_retry_off_420s_included() -> None:
    policy = Policy(timeout=15.0, max_retries=0, max_wait=None, backoff=0.5, max_backoff=60.0)
    for got in (answer(503, b""), answer(420, ERROR_420), answer(420, ERROR_420, reset_in=1.0)):
        _, decision = run(got, read=True, policy=policy)
        assert decision.action is Action.RAISE
    _, decision = run(answer(error=OSError(), stale=True), read=True, policy=policy)
    assert decision.action is Action.RETRY  # a stale connection is no retry of a failure


def test_backoff_doubles_with_jitter_up_to_max_backoff() -> None:
    delays = []
    for failures in range(5):
        for jitter in (0.0, 0.999999):
            _, decision = run(
                answer(503, b""), read=True, tries=Tries(failures=failures), jitter=jitter
            )
            delays.append(decision.delay)
    full = [0.5, 1.0, 2.0, 4.0, 8.0]
    assert delays[0::2] == [d / 2 for d in full]  # jitter 0: half the delay
    assert delays[1::2] == pytest.approx(full)  # jitter ~1: the whole of it
    policy = Policy(timeout=15.0, max_retries=50, max_wait=None, backoff=0.5, max_backoff=3.0)
    _, decision = run(
        answer(503, b""), read=True, tries=Tries(failures=30), policy=policy, jitter=0.0
    )
    assert decision.delay == 1.5


def test_a_wait_or_backoff_past_the_deadline_raises_now() -> None:
    _, decision = run(answer(503, b""), read=True, deadline=10.0, now=9.9)
    assert decision.action is Action.RAISE and decision.note == "no time left in max_wait=60 s"
    _, decision = run(answer(420, ERROR_420, reset_in=30.0), read=True, deadline=10.0, now=0.0)
    assert decision.action is Action.RAISE and decision.note == "free again in 30.0 s; giving up"
    _, decision = run(answer(420, ERROR_420, reset_in=5.0), read=True, deadline=10.0, now=0.0)
    assert decision.action is Action.REQUEUE and decision.note == "waiting 5.0 s for -Until"


def test_a_read_cut_short_by_max_wait_is_not_retried() -> None:
    outcome, decision = run(answer(error=asyncio.TimeoutError(), cut_short=True), read=True)
    assert outcome.kind == Kind.CUT_SHORT and decision.action is Action.RAISE
    assert str(outcome.error).endswith("max_wait of 60 s ran out during the request")


def test_a_bad_url_is_not_retried() -> None:
    outcome, decision = run(answer(error=aiohttp.InvalidURL("nowhere")), read=True)
    assert outcome.kind == Kind.BAD_URL and decision.action is Action.RAISE


def test_a_420_keeps_the_servers_errors_and_is_a_rate_limit_error() -> None:
    outcome, _ = run(answer(420, ERROR_420, reset_in=3.0), read=True)
    assert isinstance(outcome.error, RateLimitError)
    assert [e.code for e in outcome.error.errors] == ["TOO_MANY_REQUESTS"]
    assert outcome.kind == Kind.QUOTA_SPENT and outcome.reset_in == 3.0
