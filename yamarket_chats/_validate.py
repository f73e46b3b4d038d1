"""Every argument check of the client, one function per rule.

Input that cannot be valid is refused here, before any request, with an
`InvalidRequestError` that names the argument and the limit. The limits come
from the official spec (ids are int64) or, where the spec is silent, from the
bounds named below. Secrets are never echoed.

Enum values are the one place the client lets through what it does not know:
the API adds values to its enums (answers already decode them), so a value
shaped like the spec's (`MAX_ENUM_CHARS` upper-case letters, digits and ``_``)
is sent as it is, with a DEBUG line naming the argument, and a new status can
be filtered on before this library knows it. Anything else is refused.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, TypeVar

from ._ids import INT64_MAX
from .errors import InvalidRequestError
from .limits import METHODS, Limiter, RateLimit, _is_int
from .models import (
    ChatContext,
    ChatContextIdentifiableType,
    ChatContextType,
    ChatStatus,
    ChatType,
    _ChatsFilter,
    _CreateChatBody,
    _HistoryBody,
    _MessageBody,
    _StrEnum,
)

if TYPE_CHECKING:  # aiohttp and yarl load with the client, not with these checks
    import aiohttp

__all__ = [
    "INT64_MAX",
    "MAX_CHATS_PAGE",
    "MAX_CONTENT_TYPE_CHARS",
    "MAX_ENUM_CHARS",
    "MAX_FILENAME_CHARS",
    "MAX_FILE_BYTES",
    "MAX_HISTORY_PAGE",
    "MAX_HOST_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_PAGE_TOKEN_CHARS",
    "MAX_SECRET_CHARS",
]

# --- limits of the spec -------------------------------------------------------
MAX_MESSAGE_CHARS: Final = 4096
MAX_CHATS_PAGE: Final = 20
MAX_HISTORY_PAGE: Final = 100
MAX_FILE_BYTES: Final = 5 * 1024 * 1024

# --- bounds where the spec is silent ----------------------------------------
#: Real keys and tokens are under 100 characters; 4 KiB is far past any real
#: one and far below what a server accepts in a header line.
MAX_SECRET_CHARS: Final = 4096
#: The API's tokens are short opaque strings; this only stops absurd input.
MAX_PAGE_TOKEN_CHARS: Final = 4096
MAX_FILENAME_CHARS: Final = 255  #: the usual file-system limit on a name
MAX_CONTENT_TYPE_CHARS: Final = 255  #: RFC 6838: 127 for type and subtype each
#: An enum value this library does not know yet: the spec's longest is 20
#: characters (``WAITING_FOR_CUSTOMER``); 64 leaves room and stops absurd input.
MAX_ENUM_CHARS: Final = 64

logger = logging.getLogger("yamarket_chats")

# C0 and C1 control characters (CR, LF, NUL, tab...) and lone surrogates,
# which cannot be encoded as UTF-8 and so cannot be sent at all.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_NOT_VISIBLE_ASCII: Final = re.compile("[^\x21-\x7e]")
_CHAR_KINDS: Final = {"\r": "a line break", "\n": "a line break", " ": "a space"}
# The shape of the spec's enum values, and so of the values it may add.
_ENUM_SHAPE: Final = re.compile("[A-Z][A-Z0-9_]*")

# A media type of RFC 6838 (type and subtype are "restricted names") with the
# optional parameters of RFC 9110 section 8.3.1 (token=token or token="quoted").
_MIME_NAME: Final = r"[A-Za-z0-9][A-Za-z0-9!#$&\-^_.+]{0,126}"
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = r'"(?:[ !#-\[\]-~]|\\[ -~])*"'
_MEDIA_TYPE: Final = re.compile(
    rf"{_MIME_NAME}/{_MIME_NAME}(?: *; *{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))* *"
)
# Characters a host name may hold once yarl has lowercased it and encoded any
# international name as punycode: RFC 3986 reg-name without "%" (getaddrinfo
# takes a name as it is and never percent-decodes it).
_HOST_NAME: Final = re.compile(r"[a-z0-9\-._~!$&'()*+,;=]+")
MAX_HOST_CHARS: Final = 253  #: RFC 1035: a name is 255 octets on the wire
MAX_LABEL_CHARS: Final = 63  #: RFC 1035

T = TypeVar("T")


def _show(value: object) -> str:
    """A short, always printable description of a refused value.

    Ints, floats, None and strings are shown by their plain value (never a
    subclass's own repr, which may raise or say anything); anything else by
    its type name.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        number = _exact_int(value)
        if number.bit_length() > 128:  # repr() of a huge int raises
            return f"an integer of {number.bit_length()} bits"
        return repr(number)
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, str):
        text = _exact_str(value)
        return repr(text) if len(text) <= 40 else f"a string of {len(text)} characters"
    return f"a value of type {type(value).__name__}"


def _exact_int(value: int) -> int:
    """The plain `int` of an int subclass (an IntEnum...): what the wire carries.

    msgspec refuses to encode int subclasses, and a subclass may format itself
    as anything in a URL path; ``int.__index__`` ignores every override.
    """
    return int.__index__(value)


def _exact_str(value: str) -> str:
    """The plain `str` of a str subclass (a ``(str, Enum)`` member...): its characters.

    ``str(member)`` of a user's ``(str, Enum)`` is ``'MyStatus.NEW'``;
    ``str.__str__`` ignores every override and gives the characters themselves.
    """
    return str.__str__(value)


# --- ids and paging -----------------------------------------------------------


def positive_id(name: str, value: object) -> int:
    """An id of the spec: int64 with ``minimum: 1`` (bool is not an int here)."""
    if _is_int(value):
        value = _exact_int(value)
    if not _is_int(value) or not 1 <= value <= INT64_MAX:
        raise InvalidRequestError(
            f"{name} must be an integer >= 1 and <= 2**63-1 (int64), got {_show(value)}"
        )
    return value


def int64(name: str, value: object) -> int:
    """An int64 without a minimum: the spec's (deprecated) ``orderId`` fields."""
    if _is_int(value):
        value = _exact_int(value)
    if not _is_int(value) or not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise InvalidRequestError(
            f"{name} must be an integer in -2**63..2**63-1 (int64), got {_show(value)}"
        )
    return value


def page_limit(value: object, maximum: int) -> int | None:
    """A page size of 1..maximum, or None for the server's default."""
    if value is None:
        return None
    if not _is_int(value) or not 1 <= _exact_int(value) <= maximum:
        raise InvalidRequestError(f"limit must be an integer in 1..{maximum}, got {_show(value)}")
    return _exact_int(value)


def page_token(value: object) -> str | None:
    """A ``nextPageToken`` given back: a string without control characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"page_token must be a string (a nextPageToken), got {_show(value)}"
        )
    if len(value) > MAX_PAGE_TOKEN_CHARS:
        raise InvalidRequestError(
            f"page_token must be at most {MAX_PAGE_TOKEN_CHARS} characters, got {len(value)}"
        )
    _no_control("page_token", value)
    return _exact_str(value)


def _no_control(name: str, value: str) -> None:
    bad = _CONTROL.search(value)
    if bad is not None:
        raise InvalidRequestError(
            f"{name} must not contain control characters (CR, LF, NUL...) or lone "
            f"surrogates; character {bad.start() + 1} is {bad.group()!r}"
        )


# --- request bodies -------------------------------------------------------------


# Context types the spec leaves out of a context that names an order or a return.
_NOT_IDENTIFIABLE: Final = frozenset(str(m.value) for m in ChatContextType) - frozenset(
    str(m.value) for m in ChatContextIdentifiableType
)


def context(name: str, value: object) -> ChatContext:
    """A `ChatContext` of the spec's ChatContextDTO: ORDER or RETURN and an id.

    ``DIRECT`` is a context type the spec leaves out here on purpose (a chat
    the buyer started has no order or return to name), so it is refused.
    """
    if not isinstance(value, ChatContext):
        raise InvalidRequestError(f"{name} must be a ChatContext, got {_show(value)}")
    kind = _enum_value(
        f"{name}.type", value.type, ChatContextIdentifiableType, excluded=_NOT_IDENTIFIABLE
    )
    return ChatContext(kind, positive_id(f"{name}.id", value.id))


def _enum_value(
    name: str, value: object, kind: type[enum.Enum], *, excluded: frozenset[str] = frozenset()
) -> str:
    """The wire string of an enum value: the member of `kind`, a str equal to one, or a new one.

    The check and the result both use the value's own characters, so a
    caller's ``(str, Enum)`` member is sent as ``"NEW"``, never ``"MyStatus.NEW"``.
    A value `kind` lacks is sent (and logged) when it may be one the API added
    since: shaped like the spec's values, not one the spec leaves out of this
    argument (`excluded`), and no member of another of this library's enums
    (``ChatStatus.NEW`` given as a chat type is a mistake, not news).
    """
    known = [str(m.value) for m in kind]
    text = _exact_str(value) if isinstance(value, str) else None
    if text is not None and text in known:
        return text
    if (
        text is None
        or text in excluded
        or isinstance(value, _StrEnum)
        or len(text) > MAX_ENUM_CHARS
        or _ENUM_SHAPE.fullmatch(text) is None
    ):
        raise InvalidRequestError(_not_enum(name, value, kind, known, text in excluded))
    logger.debug(
        "%s %r is no %s value this version knows; sent as it is (a value the API added?)",
        name,
        text,
        kind.__name__,
    )
    return text


def _not_enum(
    name: str, value: object, kind: type[enum.Enum], known: list[str], excluded: bool
) -> str:
    """Why `value` is refused as a `kind` value: the message of `_enum_value`."""
    allowed = ", ".join(known)
    if excluded or isinstance(value, _StrEnum):
        what = f"{type(value).__name__}.{value}" if isinstance(value, _StrEnum) else _show(value)
        return f"{name} must be one of {allowed}, got {what}, which is no {kind.__name__}"
    return (
        f"{name} must be one of {allowed}, or a value the API added since (upper-case "
        f"letters, digits and '_', up to {MAX_ENUM_CHARS} characters), got {_show(value)}"
    )


def _items(name: str, values: object) -> list[object] | None:
    """A filter of the spec: None, or a non-empty list (``minItems: 1``)."""
    if values is None:
        return None
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise InvalidRequestError(f"{name} must be a list of items or None, got {_show(values)}")
    items = list(values)
    if not items:
        raise InvalidRequestError(f"{name} must hold at least 1 item; pass None for no filter")
    return items


def _unique(name: str, items: list[T]) -> list[T]:
    if len({str(i) if isinstance(i, str) else repr(i) for i in items}) != len(items):
        raise InvalidRequestError(f"{name} must not repeat an item (the API wants unique items)")
    return items


def _enum_items(name: str, values: object, kind: type[enum.Enum]) -> list[str] | None:
    items = _items(name, values)
    if items is None:
        return None
    return _unique(name, [_enum_value(f"{name} item", v, kind) for v in items])


def chats_filter(
    order_ids: object,
    contexts: object,
    context_types: object,
    types: object,
    statuses: object,
) -> _ChatsFilter:
    """The body of ``get_chats``: each filter per the spec's GetChatsRequest."""
    id_items = _items("order_ids", order_ids)
    context_items = _items("contexts", contexts)
    return _ChatsFilter(
        order_ids=None
        if id_items is None
        else _unique("order_ids", [int64("order_ids item", i) for i in id_items]),
        contexts=None
        if context_items is None
        else _unique("contexts", [context("contexts item", c) for c in context_items]),
        context_types=_enum_items("context_types", context_types, ChatContextType),
        types=_enum_items("types", types, ChatType),
        statuses=_enum_items("statuses", statuses, ChatStatus),
    )


def create_chat_body(order_id: object, chat_context: object) -> _CreateChatBody:
    """The body of ``create_chat``: `order_id`, `context`, or both.

    The spec's CreateChatRequest requires neither field and allows both (the
    deprecated ``orderId`` next to its successor ``context``); a request with
    neither names no chat, so at least one is required here.
    """
    if order_id is None and chat_context is None:
        raise InvalidRequestError("create_chat needs order_id or context (or both)")
    return _CreateChatBody(
        order_id=None if order_id is None else int64("order_id", order_id),
        context=None if chat_context is None else context("context", chat_context),
    )


def history_body(message_id_from: object) -> _HistoryBody:
    """The body of ``get_chat_history``."""
    if message_id_from is None:
        return _HistoryBody()
    return _HistoryBody(message_id_from=positive_id("message_id_from", message_id_from))


def message(value: object) -> _MessageBody:
    """The body of ``send_message_to_chat``: 1..4096 characters of text."""
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"message must be a string of 1..{MAX_MESSAGE_CHARS} characters, got {_show(value)}"
        )
    if not 1 <= len(value) <= MAX_MESSAGE_CHARS:
        raise InvalidRequestError(
            f"message must be a string of 1..{MAX_MESSAGE_CHARS} characters, got {len(value)}"
        )
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise InvalidRequestError(
            f"message has a lone surrogate at character {bad.start() + 1} "
            "(text decoded with errors='surrogateescape'?); it cannot be sent as UTF-8"
        )
    return _MessageBody(message=_exact_str(value))


# --- files ----------------------------------------------------------------------


def header_text(name: str, value: object, maximum: int) -> str | None:
    """A `filename` or `content_type`: None, or 1..maximum characters, no CR/LF/NUL."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= maximum:
        raise InvalidRequestError(
            f"{name} must be a string of 1..{maximum} characters, got {_show(value)}"
        )
    _no_control(name, value)
    return _exact_str(value)


def content_type(value: object) -> str | None:
    """A media type such as ``text/plain`` or ``text/plain; charset=utf-8``.

    ``type/subtype`` of RFC 6838 characters, then optional ``; name=value``
    parameters (value a token or a quoted string), ASCII only: anything else
    could not be a Content-Type the API understands.
    """
    text = header_text("content_type", value, MAX_CONTENT_TYPE_CHARS)
    if text is not None and _MEDIA_TYPE.fullmatch(text) is None:
        raise InvalidRequestError(
            "content_type must be a media type 'type/subtype' of ASCII letters, digits and "
            "!#$&-^_.+ (RFC 6838), optionally with '; name=value' parameters, such as "
            f"'image/png' or 'text/plain; charset=utf-8'; got {_show(text)}"
        )
    return text


def file_size(size: int, what: str) -> None:
    """A file of 1 byte to 5 MiB.

    5 MiB is the API's limit; the spec sets no minimum, the 1 byte is this
    library's own rule (API.md: an empty file is refused before any request).
    """
    if size == 0:
        raise InvalidRequestError(
            f"file {what} is empty; this library refuses empty files (an empty upload is "
            "never what a seller means); send 1 byte to 5 MiB"
        )
    if size > MAX_FILE_BYTES:
        raise InvalidRequestError(
            f"file {what} is {size} bytes, over the API's limit of 5 MiB ({MAX_FILE_BYTES} bytes)"
        )


# --- the client's options -------------------------------------------------------


def credentials(api_key: object, oauth_token: object) -> str:
    """The one secret given: exactly one of `api_key` or `oauth_token`."""
    if (api_key is None) == (oauth_token is None):
        raise InvalidRequestError("pass exactly one of api_key or oauth_token")
    if api_key is not None:
        return secret("api_key", api_key)
    return secret("oauth_token", oauth_token)


def secret(name: str, value: object) -> str:
    """A key or token: 1..4096 visible ASCII characters; its text is never echoed."""
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{name} must be a string, got a value of type {type(value).__name__}"
        )
    if not 1 <= len(value) <= MAX_SECRET_CHARS:
        raise InvalidRequestError(
            f"{name} must be 1..{MAX_SECRET_CHARS} characters, got {len(value)}"
        )
    bad = _NOT_VISIBLE_ASCII.search(value)
    if bad is not None:
        char = bad.group()
        kind = _CHAR_KINDS.get(
            char, "a control character" if char.isascii() else "a non-ASCII character"
        )
        raise InvalidRequestError(
            f"{name} must be visible ASCII characters only (no spaces, CR, LF, NUL or "
            f"non-ASCII); character {bad.start() + 1} of {len(value)} is {kind}"
        )
    return _exact_str(value)


def base_url(value: object) -> str:
    """An absolute http(s) URL without credentials, query or fragment; normalized."""
    if not isinstance(value, str):
        raise InvalidRequestError(
            "base_url must be a string such as 'https://api.partner.market.yandex.ru', "
            f"got {_show(value)}"
        )
    if _CONTROL.search(value) or " " in value:
        raise InvalidRequestError("base_url must not contain spaces or control characters")
    from yarl import URL

    try:
        url = URL(value)
        host, scheme, port = url.raw_host, url.scheme, url.explicit_port
        _ = url.host  # decodes punycode: refuses 'xn--a', which aiohttp would fail on later
    except (ValueError, TypeError) as exc:  # yarl: 'Invalid IPv6 URL', port out of range
        # yarl's text may quote the authority, and so a password in it
        detail = "" if "@" in value else f": {exc}"
        raise InvalidRequestError(f"base_url is not a valid URL{detail}") from None
    if scheme not in ("http", "https") or not host:
        raise InvalidRequestError(
            f"base_url must be an http:// or https:// URL with a host, got scheme {scheme!r}"
        )
    if url.user is not None or url.password is not None:
        raise InvalidRequestError("base_url must not carry a user or password")
    if url.query_string or url.fragment:
        raise InvalidRequestError("base_url must not have a query or fragment")
    if port == 0:
        raise InvalidRequestError("base_url port must be in 1..65535, got 0")
    if "/v2/businesses/" in url.path.rstrip("/") + "/":
        # the client adds it: 'https://host/v2/businesses' would call .../v2/businesses/v2/...
        raise InvalidRequestError(
            "base_url must be the API's root, without /v2/businesses (the client adds it), "
            "such as 'https://api.partner.market.yandex.ru'"
        )
    _url_host(host)
    return str(url).rstrip("/")


def _url_host(host: str) -> None:
    """Refuse a host that aiohttp would only fail on at the first request.

    `host` is yarl's ``raw_host``: lowercased, international names already
    punycode, IPv6 without brackets. aiohttp hands exactly this string to
    ``getaddrinfo`` (and to TLS as the server name), which encode it with
    Python's ``idna`` codec: that encoding is checked here, with the DNS
    limits it does not check (RFC 1035: labels 1..63, names up to 253).
    """
    if ":" in host:  # IPv6; yarl has checked the address itself
        if "%" in host:
            raise InvalidRequestError(
                "base_url must not carry an IPv6 zone id (%25...): aiohttp cannot connect to it"
            )
        return
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return
    if _HOST_NAME.fullmatch(host) is None:
        where = next(i for i, char in enumerate(host) if not _HOST_NAME.fullmatch(char))
        raise InvalidRequestError(
            f"base_url host must not contain {_char_kind(host[where])} (character "
            f"{where + 1} of the host after Unicode normalization); a host name is letters, "
            "digits, '-' and '.'"
        )
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name's last dot
    labels = name.split(".")
    if len(name) > MAX_HOST_CHARS:
        raise InvalidRequestError(
            f"base_url host must be at most {MAX_HOST_CHARS} characters, got {len(name)}"
        )
    for number, label in enumerate(labels, 1):
        if not 1 <= len(label) <= MAX_LABEL_CHARS:
            raise InvalidRequestError(
                f"base_url host: each dot-separated label must be 1..{MAX_LABEL_CHARS} "
                f"characters; label {number} has {len(label)}"
            )
    if labels[-1].isdigit():
        raise InvalidRequestError(
            "base_url host ends in a number but is not an IPv4 address (a.b.c.d, each 0..255)"
        )
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise InvalidRequestError(f"base_url host cannot be encoded for DNS ({exc})") from None


def _char_kind(char: str) -> str:
    if char == " ":
        return "a space"
    if not char.isprintable():
        return f"the control character U+{ord(char):04X}"
    return repr(char)


def seconds(name: str, value: object, *, zero: bool = False) -> float:
    """A finite number of seconds, > 0 (or >= 0 with `zero`); bool refused."""
    limit = ">= 0" if zero else "> 0"
    try:
        if isinstance(value, int):
            number = float(_exact_int(value))
        else:
            number = float.__float__(value) if isinstance(value, float) else math.nan
    except OverflowError:
        number = math.inf
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or not (zero or number):
        raise InvalidRequestError(
            f"{name} must be a finite number of seconds {limit}, got {_show(value)}"
        )
    return number


def timeout(value: object) -> float:
    """`timeout`: seconds for one request."""
    return seconds("timeout", value)


def max_wait(value: object) -> float | None:
    """`max_wait`: seconds for the whole of one call, or None for no bound."""
    return None if value is None else seconds("max_wait", value)


def retries(value: object) -> int:
    """`max_retries`: an integer >= 0."""
    if not _is_int(value) or value < 0:
        raise InvalidRequestError(f"max_retries must be an integer >= 0, got {_show(value)}")
    return value


def max_concurrency(value: object) -> int | None:
    """`max_concurrency`: an integer >= 1, or None for no cap."""
    if value is not None and (not _is_int(value) or value < 1):
        raise InvalidRequestError(
            f"max_concurrency must be an integer >= 1 or None, got {_show(value)}"
        )
    return value


def backoff(first: object, most: object) -> tuple[float, float]:
    """`backoff` (>= 0 seconds) and `max_backoff` (>= backoff)."""
    low = seconds("backoff", first, zero=True)
    high = seconds("max_backoff", most, zero=True)
    if high < low:
        raise InvalidRequestError(f"max_backoff must be >= backoff ({low}), got {_show(most)}")
    return low, high


def keep_alive(value: object) -> bool:
    """`keep_alive`: True or False."""
    if not isinstance(value, bool):
        raise InvalidRequestError(f"keep_alive must be True or False, got {_show(value)}")
    return value


def limits(value: object) -> Mapping[str, RateLimit | None] | None:
    """`limits`: method names of the API mapped to a `RateLimit` or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"limits must be a mapping of method name to RateLimit, got {_show(value)}"
        )
    unknown = [k for k in value if k not in METHODS]
    if unknown:
        names = sorted(map(str, unknown))
        raise InvalidRequestError(
            f"limits has unknown method names {names}; known: {', '.join(METHODS)}"
        )
    for method, limit in value.items():
        if limit is not None and not isinstance(limit, RateLimit):
            raise InvalidRequestError(
                f"limits[{method!r}] must be a RateLimit or None, got {_show(limit)}"
            )
    return value


def session(value: object) -> aiohttp.ClientSession | None:
    """`session`: an ``aiohttp.ClientSession`` or None."""
    import aiohttp

    if value is not None and not isinstance(value, aiohttp.ClientSession):
        raise InvalidRequestError(
            f"session must be an aiohttp.ClientSession or None, got {_show(value)}"
        )
    return value


def limiter(value: object) -> Limiter | None:
    """`limiter`: a `Limiter` (e.g. a RedisLimiter) or None."""
    if value is not None and not isinstance(value, Limiter):
        raise InvalidRequestError(
            f"limiter must be a Limiter (e.g. RedisLimiter) or None, got {_show(value)}"
        )
    return value


_OPTIONS: Final[dict[str, Callable[[object], object]]] = {
    "base_url": base_url,
    "limits": limits,
    "max_concurrency": max_concurrency,
    "max_retries": retries,
    "timeout": timeout,
    "max_wait": max_wait,
    "keep_alive": keep_alive,
    "session": session,
    "limiter": limiter,
    "backoff": lambda value: seconds("backoff", value, zero=True),
    "max_backoff": lambda value: seconds("max_backoff", value, zero=True),
}


def client_options(**options: object) -> None:
    """Check the named options of `ChatsClient` or `with_options`, each by its rule."""
    for name, value in options.items():
        _OPTIONS[name](value)
    if "backoff" in options and "max_backoff" in options:
        backoff(options["backoff"], options["max_backoff"])
