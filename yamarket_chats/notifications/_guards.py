"""Keeping strangers out: a shared secret and an allow-list of source addresses.

Market signs nothing (the notification spec has no security scheme): anyone
who learns the URL can post to it. The receiver can demand a secret that only
Market knows, because it is part of the URL registered in the seller cabinet,
and can check where a request comes from. Both are checked before the body is
read, the seen-set is touched or the callback runs.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Final

from ..errors import InvalidRequestError

__all__ = ["AllowHook", "allow_networks", "check_secret", "secret_matches"]

#: Decides from a request's source address (``"5.45.207.10"``) whether to hear it.
AllowHook = Callable[[str], bool]

_SECRET_CHARS: Final = re.compile(r"[A-Za-z0-9._~-]+")
MIN_SECRET_LENGTH: Final = 16


def check_secret(secret: str | None) -> bytes | None:
    """Validate a configured secret; return it as bytes for constant-time compares.

    It must fit in a URL path segment and a header unescaped (letters, digits,
    ``._~-``, what ``secrets.token_urlsafe()`` makes) and be at least 16
    characters. The value is never echoed in the error.
    """
    if secret is None:
        return None
    if not isinstance(secret, str):
        raise InvalidRequestError(f"secret must be a str, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidRequestError(
            f"secret must be at least {MIN_SECRET_LENGTH} characters, got {len(secret)}"
        )
    if _SECRET_CHARS.fullmatch(secret) is None:
        raise InvalidRequestError(
            "secret may hold only letters, digits and ._~- (use secrets.token_urlsafe())"
        )
    return secret.encode()


def secret_matches(expected: bytes, given: str | None) -> bool:
    """Compare in constant time (:func:`hmac.compare_digest`); ``None`` never matches."""
    if given is None:
        return False
    try:
        candidate = given.encode()
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, candidate)


def allow_networks(networks: Iterable[str]) -> AllowHook:
    """An allow hook that accepts source addresses inside ``networks`` (CIDR strings).

    ``allow_networks(["5.45.207.0/25", "141.8.142.0/25"])``; an IPv4 address
    seen as IPv6 (``::ffff:5.45.207.1``) counts as IPv4; anything that is not
    an IP address is refused.
    """
    if isinstance(networks, str):
        raise InvalidRequestError(f"networks must be a list of CIDR strings, got {networks!r}")
    parsed = []
    for network in networks:
        try:
            parsed.append(ipaddress.ip_network(network))
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(f"networks: {network!r} is not a network: {exc}") from None
    if not parsed:
        raise InvalidRequestError("networks must name at least one network")
    nets = tuple(parsed)

    def allow(remote: str) -> bool:
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in nets)

    return allow
