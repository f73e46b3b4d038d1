"""Throwaway TLS certificates, so tests and benchmarks can run the fake over HTTPS.

A fresh certificate authority signs a server certificate for the loopback
names; nothing is written anywhere but a temporary directory that is removed
at once. The ``cryptography`` package makes them when it is installed,
otherwise the ``openssl`` command line tool does. A CA plus a leaf (rather than
one self-signed leaf) passes the strict X.509 checks Python 3.13+ applies.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
_VALID_DAYS = 2


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

    ``tool`` picks the maker: ``"cryptography"``, ``"openssl"``, or ``None`` for
    the first one available. ``RuntimeError`` if none is.
    """
    if not hosts:
        raise ValueError("hosts must name at least one IP address or DNS name")
    if tool is None:
        tool = "cryptography" if _has_cryptography() else "openssl"
    if tool == "cryptography":
        ca_pem, cert_pem, key_pem = _with_cryptography(hosts)
    elif tool == "openssl":
        ca_pem, cert_pem, key_pem = _with_openssl(hosts)
    else:
        raise ValueError(f"tool must be 'cryptography', 'openssl' or None, got {tool!r}")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="yamarket-tls-") as directory:
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_file.write_text(cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_text(key_pem)
        server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cadata=ca_pem)
    return SelfSignedTLS(ca_pem, cert_pem, server_context, client_context)


def _has_cryptography() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_cryptography(hosts: Sequence[str]) -> tuple[str, str, str]:
    """(CA certificate, server certificate, server key) as PEM, made in process."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise RuntimeError("the cryptography package is not installed") from None

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=_VALID_DAYS)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("yamarket-chats throwaway test CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = serialization.Encoding.PEM
    return (
        ca_cert.public_bytes(pem).decode(),
        cert.public_bytes(pem).decode(),
        key_pem.decode(),
    )


def _with_openssl(hosts: Sequence[str]) -> tuple[str, str, str]:
    """(CA certificate, server certificate, server key) as PEM, made by ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither the cryptography package nor the openssl tool is available")
    alt_names = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    days = str(_VALID_DAYS)
    with tempfile.TemporaryDirectory(prefix="yamarket-tls-") as directory:
        d = Path(directory)
        extensions = d / "server.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={alt_names}\n"
            "authorityKeyIdentifier=keyid\n"
            "subjectKeyIdentifier=hash\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        steps = [
            [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
             "-days", days, "-subj", "/CN=yamarket-chats throwaway test CA",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            [openssl, "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", f"/CN={hosts[0]}"],
            [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", days, "-sha256",
             "-extfile", "server.ext"],
        ]  # fmt: skip
        for step in steps:
            done = subprocess.run(step, cwd=d, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"openssl {step[1]} failed: {done.stderr.strip()}")
        return (
            (d / "ca.pem").read_text(),
            (d / "server.pem").read_text(),
            (d / "server.key").read_text(),
        )
