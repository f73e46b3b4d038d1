"""A module used without its extra names the ``pip install`` that brings it.

tests/test_packaging.py shows it on a real install without extras; here the
same refusal runs in this process (measured), the extra's package hidden.
"""

from __future__ import annotations

import importlib
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "hidden", "extra"),
    [
        ("yamarket_chats.redis_limits", "redis", "redis"),
        ("yamarket_chats.otel", "opentelemetry", "otel"),
        ("yamarket_chats.desk.mcp", "mcp", "mcp"),
    ],
)
def test_importing_a_module_without_its_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch, module: str, hidden: str, extra: str
) -> None:
    for name in [n for n in sys.modules if n == hidden or n.startswith(hidden + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, hidden, None)  # `import hidden` fails as if absent
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError) as error:
        importlib.import_module(module)
    assert type(error.value) is ImportError  # not a bare ModuleNotFoundError
    assert str(error.value) == (
        f"{module} needs {hidden}, which is not installed: pip install 'yamarket-chats[{extra}]'"
    )
    assert error.value.name == hidden
