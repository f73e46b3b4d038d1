"""The suite's own scheduling rule: the slow tests it hands to the workers first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import SLOW_FIRST

ROOT = Path(__file__).resolve().parent.parent


def test_every_slow_first_entry_names_an_existing_test() -> None:
    """A renamed test must not silently drop out of the slow-first group."""
    for entry in SLOW_FIRST:
        path, _, name = entry.partition("::")
        source = (ROOT / path).read_text("utf-8")
        if name:
            assert re.search(rf"^(async )?def {re.escape(name)}\(", source, re.M), entry
        else:
            assert re.search(r"^(async )?def test_", source, re.M), entry


def test_slow_tests_come_first_in_the_collected_order(request: pytest.FixtureRequest) -> None:
    """Whatever the random order, no slow test follows a quick one."""
    slow = [item.nodeid.startswith(SLOW_FIRST) for item in request.session.items]
    assert slow == sorted(slow, reverse=True)
