"""The support desk: what waits for the seller's answer, and one chat as a desk reads it.

>>> queue = await waiting_chats("chats.db", older_than=dt.timedelta(hours=2))
>>> view = await read_chat("chats.db", client, business_id, chat_id)

Built on a sink a sync keeps current (SQLite or PostgreSQL; JSON Lines
cannot answer queries): `waiting_chats` reads the reply-due queue with no
API request; `read_chat` reads a chat from the sink and fetches through the
client only what came after the last message stored. Nothing here writes to
the sink. ``yamarket-chats due`` prints the queue; ``yamarket-chats mcp``
serves both, and a confirmed ``send_reply``, to AI assistants
(`yamarket_chats.desk.mcp`, extra ``[mcp]``). See ``docs/desk.md``.

Modules: ``_reading`` (the sources and their dialects), ``_queue`` (the
queue and its waiting rule), ``_history`` (a chat, sink then API).
"""

from ._history import DEFAULT_READ_LIMIT, MAX_READ_LIMIT, ChatView, read_chat
from ._queue import WAITING_STATUSES, WaitingChat, waiting_chats
from ._reading import Source

__all__ = [
    "DEFAULT_READ_LIMIT",
    "MAX_READ_LIMIT",
    "WAITING_STATUSES",
    "ChatView",
    "Source",
    "WaitingChat",
    "read_chat",
    "waiting_chats",
]
