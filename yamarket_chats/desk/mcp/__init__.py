"""An MCP server over the desk, for AI assistants that help support staff (extra ``[mcp]``).

Three tools: ``list_waiting_chats`` (the reply-due queue, from the sink),
``read_chat`` (a chat from the sink, completed through the client) and
``send_reply``. The server is read-only unless built with
``allow_send=True``; then every send asks the human through MCP elicitation,
showing the chat, the buyer's last message and the exact text (controls and
bidirectional marks escaped), and sends only on an explicit accept. A
declined, cancelled or unanswered question sends nothing.

Modules: ``_outputs`` (the tools' structured outputs), ``_sending`` (the
question, the send, and what makes a send safe to repeat), ``_server`` (the
tools and their descriptions). Needs the MCP SDK (``pip install
'yamarket-chats[mcp]'``); ``yamarket-chats mcp`` runs it on stdio or
streamable HTTP.
"""

from ..._extras import missing_extra

try:
    import mcp.server  # noqa: F401  (the SDK, before any module of ours needs it)
except ModuleNotFoundError as exc:
    raise missing_extra(exc, "mcp", __name__) from None

from ._sending import REPEAT_SECONDS
from ._server import build_server

__all__ = ["REPEAT_SECONDS", "build_server"]
