"""One reply: the question the human confirms, the send, and what makes repeating it safe.

A send goes through the client (its limits, and its rule never to repeat a
send that may have reached the API) and is logged with its chat and length,
never its text. Repeating a send is safe two ways:

* **This server remembers** the text it sent to each chat (a hash, for
  `REPEAT_SECONDS`): a repeated call or a round the client resends is
  answered ``already_sent`` without asking or reading anything.
* **The chat itself is read** before the human is asked. If the seller's
  messages after the buyer's last one already hold exactly this text (sent
  by another server process, by a send whose answer was lost, by a
  colleague), the call is answered ``already_sent``: nobody is asked.

A send whose outcome is unknown (a 5xx, a connection lost after the request
went out, a call cancelled mid-send) is answered ``uncertain``. It does not
block a later call: that one reads the chat, finds the text or not, and only
then asks the human again, saying an earlier attempt may have arrived.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import aiohttp
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ... import _validate
from ..._text import shown
from ...client import ChatsClient
from ...errors import (
    InvalidRequestError,
    ResponseDecodeError,
    ServerError,
    TransportError,
    YandexMarketError,
)
from .._history import ChatView
from ._outputs import QUOTE_CHARS, SendResult

__all__ = [
    "REPEAT_SECONDS",
    "Confirmation",
    "Sends",
    "already_sent",
    "checked",
    "not_confirmed",
    "question",
    "replied",
]

logger = logging.getLogger("yamarket_chats.desk")

#: A send of the same text to the same chat within this many seconds is a repeat.
REPEAT_SECONDS: Final = 3600.0
_MAX_REMEMBERED = 10_000  # sends remembered (the oldest are forgotten first)

Key = tuple[int, int, str]  # business, chat, the text's SHA-256


class Confirmation(BaseModel):
    """What the human is asked before a send."""

    send: bool = Field(description="Send exactly this text to the buyer")


def checked(business_id: int, chat_id: int, text: str) -> None:
    """The client's own checks, before anyone is asked: a ToolError naming the argument."""
    try:
        _validate.positive_id("business_id", business_id)
        _validate.positive_id("chat_id", chat_id)
        _validate.message(text)
    except InvalidRequestError as exc:
        raise ToolError(str(exc).replace("message ", "text ", 1)) from None


def replied(view: ChatView, text: str) -> bool:
    """Whether the seller's messages after the buyer's last one hold exactly ``text``."""
    for message in reversed(view.messages):
        if message.sender == "CUSTOMER":
            return False
        if message.sender == "PARTNER" and message.message == text:
            return True
    return False


def _quoted(said: str) -> str:
    cut = "..." if len(said) > QUOTE_CHARS else ""
    return shown(said[:QUOTE_CHARS]) + cut


def question(view: ChatView, text: str, *, retry: bool = False) -> str:
    """The confirmation the human reads: the chat, the buyer's last message, the exact text."""
    context = view.context_type if view.order_id is None else f"order {view.order_id}"
    if view.return_id is not None:
        context = f"return {view.return_id} of order {view.order_id}"
    lines = [
        f"Send this reply to {shown(view.customer_name or 'the buyer')} in chat"
        f" {view.chat_id} (business {view.business_id}, {context}, status {view.status})?"
    ]
    for message in reversed(view.messages):
        said = message.message or " ".join(f"[{p.name}]" for p in message.payload or ())
        when = message.created_at.isoformat()
        if message.sender == "CUSTOMER":
            lines.append(f"The buyer's last message ({when}): {_quoted(said)}")
            break
        if message.sender == "PARTNER" and len(lines) == 1:
            lines.append(f"Your last reply, after it ({when}): {_quoted(said)}")
    else:
        lines.append("The buyer has written nothing among the last messages.")
    if retry:
        lines.append("An earlier attempt to send this text may or may not have arrived; it is"
                     " not in the chat as read just now.")  # fmt: skip
    lines.append(f"The reply, exactly as it will be sent ({len(text)} characters; control and"
                 f" direction marks shown escaped):\n{shown(text)}")  # fmt: skip
    return "\n\n".join(lines)


def _may_have_arrived(exc: YandexMarketError) -> bool:
    """Whether a failed send may have acted: the API answered 5xx or garbage, or the
    connection broke after the request went out (not while connecting)."""
    if isinstance(exc, (ServerError, ResponseDecodeError)):
        return True
    if isinstance(exc, TransportError):
        cause = exc.__cause__
        return cause is not None and not isinstance(cause, aiohttp.ClientConnectorError)
    return False


class Sends:
    """The sends of one server, by chat and text: what was sent, one send at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._done: dict[Key, tuple[float, SendResult]] = {}
        self._locks: dict[Key, tuple[asyncio.Lock, list[int]]] = {}

    @staticmethod
    def key(business_id: int, chat_id: int, text: str) -> Key:
        """The key of a send: the text by its hash, so that no reply is kept in memory."""
        return business_id, chat_id, hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()

    def _last(self, key: Key) -> SendResult | None:
        done = self._done.get(key)
        if done is None or self._clock() - done[0] >= REPEAT_SECONDS:
            return None
        return done[1]

    def sent(self, key: Key) -> SendResult | None:
        """The answer to a repeat: set when this text went to this chat within the window."""
        last = self._last(key)
        return last if last is not None and last.outcome in ("sent", "already_sent") else None

    def uncertain(self, key: Key) -> bool:
        """Whether the last attempt of this send, within the window, has an unknown outcome."""
        last = self._last(key)
        return last is not None and last.outcome == "uncertain"

    def record(self, key: Key, result: SendResult) -> None:
        """Remember ``result`` for ``key`` from now on."""
        self._done.pop(key, None)  # re-inserted last: the oldest are forgotten first
        self._done[key] = (self._clock(), result)
        while len(self._done) > _MAX_REMEMBERED:
            del self._done[next(iter(self._done))]

    @contextlib.asynccontextmanager
    async def holding(self, key: Key) -> AsyncIterator[None]:
        """One call at a time per chat and text; the lock goes when nobody holds or awaits it."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    async def send(
        self, client: ChatsClient, key: Key, business_id: int, chat_id: int, text: str
    ) -> SendResult:
        """Send, and remember what became of it (a cancelled send as uncertain)."""
        where = f"chat {chat_id} of business {business_id}"
        try:
            await client.send_message_to_chat(business_id, chat_id, text)
        except asyncio.CancelledError:
            self.record(key, _uncertain("the call was cancelled while the reply was sending"))
            raise
        except YandexMarketError as exc:
            if not _may_have_arrived(exc):
                raise ToolError(f"not sent: {exc}") from None
            logger.warning("send_reply: the send to %s may or may not have arrived: %s", where, exc)
            result = _uncertain(f"the send failed after the request went out ({exc})")
        else:
            logger.info("send_reply: sent %d characters to %s, confirmed by the human",
                        len(text), where)  # fmt: skip
            result = SendResult(sent=True, outcome="sent", detail=f"Sent to {where}.")
        self.record(key, result)
        return result


def _uncertain(why: str) -> SendResult:
    return SendResult(
        sent=False,
        outcome="uncertain",
        detail=f"The reply may or may not have reached the buyer: {why}. Call read_chat to"
        " check; calling send_reply again with the same text is safe (it checks the chat"
        " first and asks the human again only if the text is not there).",
    )


def already_sent(*, in_chat: bool) -> SendResult:
    """The answer to a repeat: nothing sent, nobody asked."""
    where = "is already in the chat after the buyer's last message" if in_chat else (
        "was already sent to this chat by this server")  # fmt: skip
    return SendResult(sent=False, outcome="already_sent",
                      detail=f"This exact text {where}; it was not sent again.")  # fmt: skip


def not_confirmed(action: str, business_id: int, chat_id: int) -> SendResult:
    """The answer when the human did not accept: nothing sent."""
    logger.info("send_reply: the human did not confirm (%s); nothing sent to chat %s of"
                " business %s", action, chat_id, business_id)  # fmt: skip
    return SendResult(
        sent=False,
        outcome="cancelled" if action == "cancel" else "declined",
        detail="The human did not confirm this reply; nothing was sent. Ask them what to change.",
    )
