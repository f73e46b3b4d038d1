"""Public names that load on first use (PEP 562), for the packages' ``__init__``.

``import yamarket_chats`` must stay cheap: the pytest plugin is loaded by every
pytest run of an environment with this package installed, and the console
script must catch signals from its first instant. So a package's public names
are imported from their modules only when first used, then kept.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def attach(
    package: str, modules: Mapping[str, str], names: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for `package`.

    `modules` maps each public name to the module (relative to `package`) that
    defines it; `names` are the package's ``__all__``.
    """
    namespace = sys.modules[package].__dict__
    public = frozenset(names)

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *public})

    return __getattr__, __dir__
