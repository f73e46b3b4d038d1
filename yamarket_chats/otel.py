"""OpenTelemetry tracing for the client, built on its hooks (extra ``[otel]``).

``ChatsClient(..., hooks=TracingHooks())`` opens one span per operation (a
page of a walk is one), not per attempt: the retries, waits and 420s of a call
show as the span's events and attributes, and the span is current while the
call runs, so spans of an instrumented aiohttp session nest under it. Only
``opentelemetry-api`` is needed here; the SDK or a distro configures export.
"""

from __future__ import annotations

from typing import Any

from ._extras import missing_extra

try:
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ModuleNotFoundError as error:
    raise missing_extra(error, "otel", __name__) from None

from ._version import __version__
from .hooks import CallInfo, ClientHooks

__all__ = ["TracingHooks"]

_KEY = "otel"


class TracingHooks(ClientHooks):
    """Hooks that trace every operation of a client as one CLIENT span.

    Span name: ``yamarket_chats <method>``. Attributes: ``yamarket.method``,
    ``yamarket.business_id``, ``yamarket.attempts``, ``yamarket.rate_limited``
    (420s), ``yamarket.waited_seconds`` (limits and backoffs) and
    ``http.response.status_code`` (the last answer's). Events: ``retry``
    (reason, delay) and ``wait`` (seconds on limits). A call that raises gets
    status ERROR and the exception recorded.

    :param tracer_provider: where spans go (default: the global provider).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("yamarket_chats", __version__, tracer_provider)

    async def on_start(self, call: CallInfo) -> None:
        """Open the call's span and make it current."""
        span = self._tracer.start_span(
            f"yamarket_chats {call.method}",
            kind=SpanKind.CLIENT,
            attributes={"yamarket.method": call.method, "yamarket.business_id": call.business_id},
        )
        token = context.attach(trace.set_span_in_context(span))
        call.data[_KEY] = (span, token)

    async def on_retry(self, call: CallInfo, reason: str, delay: float) -> None:
        """Add a ``retry`` event."""
        span = self._span(call)
        if span is not None:
            span.add_event(
                "retry",
                {
                    "yamarket.reason": reason,
                    "yamarket.delay_seconds": delay,
                    "yamarket.attempt": call.attempts,
                },
            )

    async def on_wait(self, call: CallInfo, reason: str, seconds: float) -> None:
        """Add a ``wait`` event."""
        span = self._span(call)
        if span is not None:
            span.add_event("wait", {"yamarket.reason": reason, "yamarket.seconds": seconds})

    async def on_end(self, call: CallInfo) -> None:
        """Set the call's totals, its outcome, and end the span."""
        held = call.data.pop(_KEY, None)
        if held is None:
            return
        span, token = held
        try:
            attributes: dict[str, Any] = {
                "yamarket.attempts": call.attempts,
                "yamarket.rate_limited": call.rate_limited,
                "yamarket.waited_seconds": call.waited_seconds,
            }
            if call.status is not None:
                attributes["http.response.status_code"] = call.status
            span.set_attributes(attributes)
            if call.error is not None:
                span.record_exception(call.error)
                span.set_status(Status(StatusCode.ERROR, type(call.error).__name__))
        finally:  # the caller's context is restored whatever happened above
            span.end()
            context.detach(token)

    @staticmethod
    def _span(call: CallInfo) -> Any:
        held = call.data.get(_KEY)
        return None if held is None else held[0]
