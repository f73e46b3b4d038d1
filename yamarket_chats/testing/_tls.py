"""Throwaway TLS certificates, so tests and benchmarks can run the fake over HTTPS.

The ``trustme`` package makes them: a fresh certificate authority signs a
server certificate for the loopback names, in memory. A CA plus a leaf (rather
than one self-signed leaf) passes the strict X.509 checks Python 3.13+ applies.
trustme is not a dependency of the library, only of its tests and benchmarks
(the ``dev`` and ``bench`` extras), so it is imported when a certificate is made.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from typing import Final

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
#: What to run when trustme is missing.
INSTALL: Final = "pip install trustme"
_TOOLS: Final = (None, "cryptography")


@dataclasses.dataclass(frozen=True)
class SelfSignedTLS:
    """A throwaway CA and a server certificate it signed, with ready SSL contexts.

    Serve with ``run_fake_server(config, ssl_context=tls.server_context)``;
    connect with ``aiohttp.TCPConnector(ssl=tls.client_context)``, which
    trusts only this CA. ``ca_pem`` is the CA certificate (for ``SSL_CERT_FILE``
    or ``--cacert``); the server's key never leaves ``server_context``.
    """

    ca_pem: str = dataclasses.field(repr=False)
    cert_pem: str = dataclasses.field(repr=False)
    server_context: ssl.SSLContext = dataclasses.field(repr=False)
    client_context: ssl.SSLContext = dataclasses.field(repr=False)


def self_signed_tls(
    hosts: Sequence[str] = DEFAULT_HOSTS, *, tool: str | None = None
) -> SelfSignedTLS:
    """Make a CA and a server certificate for ``hosts`` (IP addresses or DNS names).

    Needs the ``trustme`` package: ``RuntimeError`` naming the install
    command when it is missing. ``tool`` is kept for callers of earlier
    releases, which chose between two makers: ``None`` or ``"cryptography"``
    (what trustme builds on); the ``openssl`` command line maker is gone.
    """
    if tool not in _TOOLS:
        raise ValueError(f"tool must be 'cryptography' or None (trustme makes them), got {tool!r}")
    if not hosts:
        raise ValueError("hosts must name at least one IP address or DNS name")
    try:
        import trustme
    except ImportError:
        raise RuntimeError(f"throwaway TLS certificates need trustme: {INSTALL}") from None
    ca = trustme.CA()
    cert = ca.issue_cert(*hosts)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_context)  # the key goes through a 0600 file, removed at once
    ca_pem = ca.cert_pem.bytes().decode("ascii")
    client_context = ssl.create_default_context(cadata=ca_pem)
    return SelfSignedTLS(
        ca_pem=ca_pem,
        cert_pem=cert.cert_chain_pems[0].bytes().decode("ascii"),
        server_context=server_context,
        client_context=client_context,
    )
