"""The receiver in an aiohttp app: a route, its handler, and the drain at shutdown.

The handler refuses what it can before reading the body (the secret, the
source address, the ``Content-Type``, a declared size over the limit), reads
the body up to the limit, and writes the answer out before the callback
starts. :func:`add_notification_route` takes :class:`NotificationReceiver`'s
options (:class:`ReceiverOptions`' fields) after the app and the path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, cast

from aiohttp import web

from ..errors import InvalidRequestError
from ._answers import CONTENT_TYPE, NotificationAnswer
from ._options import ReceiverOptions, options_signature
from ._receiver import NotificationReceiver

__all__ = ["add_notification_route", "serve"]

_P = ParamSpec("_P")
_Route = Callable[Concatenate[web.Application, str, _P], NotificationReceiver]


def _route_options(
    options: Callable[_P, ReceiverOptions],
) -> Callable[[Callable[..., NotificationReceiver]], _Route[_P]]:
    """Give the route ``(app, path)`` then the parameters of ``options``."""

    def give(route: Callable[..., NotificationReceiver]) -> _Route[_P]:
        route.__signature__ = options_signature(options, route)  # type: ignore[attr-defined]
        return cast("_Route[_P]", route)

    return give


async def serve(receiver: NotificationReceiver, request: web.Request) -> web.StreamResponse:
    """Answer one aiohttp request with ``receiver`` (its :meth:`aiohttp_handler`)."""
    options = receiver.options
    if options.secret_header is not None:
        secret = request.headers.get(options.secret_header)
    else:
        secret = request.match_info.get("secret")
    content_type = request.headers.get("Content-Type", "")
    refused = receiver._check_request(secret, request.remote, content_type)
    if refused is None and (request.content_length or 0) > options.max_body_bytes:
        refused = receiver._too_large(request.content_length or 0)
    if refused is not None:
        return _response(refused)
    chunks: list[bytes] = []
    size = 0
    while size <= options.max_body_bytes:
        chunk = await request.content.read(options.max_body_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > options.max_body_bytes:
        return _response(receiver._too_large(size))
    answer, start = await receiver._decide(b"".join(chunks))
    response = _response(answer)
    if start is None:
        return response
    try:
        # Out on the wire first: a callback that blocks the loop then
        # delays nothing Market is waiting for.
        await response.prepare(request)
        await response.write_eof()
    finally:
        start()
    return response


def _response(answer: NotificationAnswer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, content_type=CONTENT_TYPE)


@_route_options(ReceiverOptions)
def add_notification_route(
    app: web.Application, path: str, *args: Any, **kwargs: Any
) -> NotificationReceiver:
    """Receive notifications on ``POST path`` of an aiohttp app; return the receiver.

    ``add_notification_route(app, path, callback, *, name, version, ...)``:
    after ``app`` and ``path``, :class:`NotificationReceiver`'s arguments.
    With ``secret`` and no ``secret_header``, ``path`` must hold a ``{secret}``
    segment, e.g. ``"/market/{secret}/notification"``. When the app shuts down
    the receiver stops accepting events (first ``on_shutdown`` hook) and every
    callback of an event accepted before is awaited: at that hook, and again
    as the first ``on_cleanup`` hook (aiohttp runs it once the request
    handlers are done), so callbacks are over before the other cleanup closes
    what they use.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequestError(f"path must start with '/', got {path!r}")
    receiver = NotificationReceiver(*args, **kwargs)
    options = receiver.options
    if options.secret is not None and options.secret_header is None and "{secret}" not in path:
        raise InvalidRequestError(
            "path must hold a {secret} segment (e.g. '/market/{secret}/notification')"
            " when the secret is not in a header (secret_header)"
        )
    app.router.add_post(path, receiver.aiohttp_handler)

    async def drain(_: web.Application) -> None:
        await receiver.aclose()

    # aiohttp's order: on_shutdown, then it waits for the handlers still
    # running, then on_cleanup (its cleanup contexts first, then the hooks).
    app.on_shutdown.insert(0, drain)
    app.on_cleanup.insert(0, drain)
    return receiver
