"""Faults injected on demand: latency, 5xx, dropped connections, bad bodies."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection
from typing import Any

FAULT_KINDS = frozenset(
    {
        "latency",  # sleep `delay`, then answer normally
        "status_500",  # answer 500 without acting
        "status_503",  # answer 503 without acting
        "status_500_after",  # act, then answer 500
        "drop",  # close the connection without acting or answering
        "drop_after",  # act, then close the connection without answering
        "truncate",  # act, then send half of the 200 body
        "invalid_json",  # act, then send a 200 whose body is not JSON
        "extra_fields",  # add unknown fields to every object of the result
        "unknown_enum",  # replace enum values with ones the spec does not list
        "body",  # act, then send a 200 whose body is the fault's `body`, as it is
    }
)


@dataclasses.dataclass
class Fault:
    """A scripted fault; ``times`` is how many more requests it hits (``None``: no end)."""

    kind: str
    times: int | None = None
    probability: float | None = None
    operations: frozenset[str] | None = None
    delay: float = 0.0
    body: bytes = b""  #: what a ``body`` fault answers


class Faults:
    """The faults armed on a fake server; the first one matching a request applies."""

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)

    def add(
        self,
        kind: str,
        *,
        times: int | None = None,
        probability: float | None = None,
        operations: Collection[str] | None = None,
        delay: float = 0.0,
        body: bytes | None = None,
    ) -> Fault:
        """Arm a fault for the next ``times`` matching requests (all, if ``None``).

        ``probability`` makes it hit each matching request with that chance
        (seeded RNG); ``operations`` restricts it to those operation names;
        ``delay`` seconds are slept before answering (the request stays in flight).
        ``body`` (bytes; for the kind ``body`` only, which needs it) is what the
        request gets instead of its 200 answer, once the request has acted:
        an answer the client must cope with, such as a timestamp it cannot read.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if (kind == "body") != (body is not None):
            raise ValueError("body= goes with the fault kind 'body', and only with it")
        fault = Fault(
            kind,
            times,
            probability,
            None if operations is None else frozenset(operations),
            delay,
            b"" if body is None else bytes(body),
        )
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def pick(self, operation: str) -> Fault | None:
        """The fault to apply to a request of ``operation``, if any (consumes one use)."""
        for fault in self._faults:
            if fault.operations is not None and operation not in fault.operations:
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    def __len__(self) -> int:
        return len(self._faults)


_UNKNOWN_ENUMS = {
    "type": "GROUP_CHAT",
    "status": "WAITING_FOR_ROBOT",
    "sender": "BOT",
}


def add_extra_fields(value: Any) -> Any:
    """Add unknown scalar, list and nested-object fields to every object in ``value``."""
    if isinstance(value, dict):
        out = {k: add_extra_fields(v) for k, v in value.items()}
        out["fakeExtraField"] = "surprise"
        out["fakeExtraObject"] = {"nested": {"level": 2, "tags": ["a", "b"]}, "flag": True}
        out["fakeExtraList"] = [{"k": 1}, {"k": 2}]
        return out
    if isinstance(value, list):
        return [add_extra_fields(v) for v in value]
    return value


def replace_enums(value: Any) -> Any:
    """Replace the values of enum fields (chat type/status, context type, sender)."""
    if isinstance(value, dict):
        out = {k: replace_enums(v) for k, v in value.items()}
        for key, unknown in _UNKNOWN_ENUMS.items():
            if isinstance(out.get(key), str):
                # A context's type gets its own unknown value.
                out[key] = "SUPPORT_TICKET" if key == "type" and "chatId" not in out else unknown
        return out
    if isinstance(value, list):
        return [replace_enums(v) for v in value]
    return value
