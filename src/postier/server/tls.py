"""TLS material for the listeners: the server context, its reload on SIGHUP, a first-start certificate.

Theory of operation: a ``TlsStore`` holds the server ``SSLContext`` built from a certificate and key
file. ``current()`` is read once per new connection (or STARTTLS), so ``reload()`` — which builds a
new context from the same paths and swaps it in only when it loads — changes what *new* sessions
get; sessions already encrypted keep the context they started with. A broken file on reload leaves
the old context in place and raises ``ConfigError``.

Protocol choices (RFC 8996 deprecates TLS 1.0/1.1; RFC 7525 / BCP 195 §4.2 recommends the cipher
suites): TLS 1.2 and 1.3 only; for TLS 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM,
ChaCha20-Poly1305); no TLS compression (CRIME), no renegotiation, server cipher preference.

When no certificate is configured, ``ensure_self_signed`` makes an EC P-256 pair under
``data_dir/tls`` on first start (written atomically, key mode 0600) so STARTTLS works out of the box:
RFC 7435 opportunistic TLS between MTAs does not verify certificates, so a self-signed one still
encrypts; submission clients will need to trust it or a real certificate must be configured.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postier.mail.domain import to_ascii
from postier.mail.errors import ConfigError
from postier.safeio import atomic_write

__all__ = [
    "TLS12_CIPHERS",
    "TlsStore",
    "client_context",
    "describe",
    "ensure_self_signed",
    "server_context",
    "upgrade",
]

# TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only. TLS 1.3 suites are all AEAD and set apart.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"
SELF_SIGNED_DAYS = 365


def _subject_alt_name(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(to_ascii(hostname))


def _self_signed(hostname: str, now: datetime) -> tuple[bytes, bytes]:
    """A PEM (certificate, private key) pair for ``hostname``, valid for about a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([_subject_alt_name(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_self_signed(
    data_dir: Path, hostname: str, *, now: datetime | None = None
) -> tuple[Path, Path, bool]:
    """``(cert, key, created)`` for ``data_dir/tls/cert.pem`` and ``key.pem``.

    Reuses the pair when both files exist; otherwise makes a new one (a lone file left by a crash
    between the two writes is replaced). ``created`` lets the caller log that it made one.
    """
    tls_dir = data_dir / "tls"
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path, False
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_pem, key_pem = _self_signed(hostname, now or datetime.now(UTC))
    # Key first: the pair counts as present only once the certificate exists too.
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, cert_pem, mode=0o644)
    return cert_path, key_path, True


def _read(path: Path, key: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(key, f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {what} file {path}: {exc.strerror}") from None


def _check_pair(cert: Path, key: Path) -> None:
    """Load both files with ``cryptography`` first, to say precisely what is wrong."""
    cert_bytes = _read(cert, "tls.cert", "certificate")
    key_bytes = _read(key, "tls.key", "private key")
    try:
        leaf = x509.load_pem_x509_certificate(cert_bytes)
    except ValueError:
        raise ConfigError("tls.cert", f"{cert} does not hold a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key_bytes, password=None)
    except TypeError:
        raise ConfigError("tls.key", f"{key} is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError("tls.key", f"{key} does not hold a PEM private key") from None
    public_der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*public_der) != private.public_key().public_bytes(*public_der):
        raise ConfigError("tls.key", f"private key {key} does not match certificate {cert}")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context: TLS 1.2–1.3, ECDHE + AEAD, no compression or renegotiation.

    Raises ``ConfigError`` (key ``tls.cert`` or ``tls.key``) when a file is missing, unreadable,
    not PEM, encrypted, or when the key does not belong to the certificate.
    """
    _check_pair(cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # RFC 8996: TLS 1.0 and 1.1 are deprecated.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError("tls.cert", f"cannot load {cert} with {key}: {exc.reason or exc}") from None
    return ctx


def client_context(verify: bool, cafile: Path | None = None) -> ssl.SSLContext:
    """A client context for delivery and tests, TLS 1.2 at least.

    ``verify=True`` checks the chain (against ``cafile`` or the system store) and the host name;
    ``verify=False`` is opportunistic TLS (RFC 7435): encrypt, but accept any certificate.
    """
    if verify:
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


class TlsStore:
    """The current server context, swapped atomically by ``reload()``."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert_path = cert
        self.key_path = key
        self._lock = threading.Lock()
        self._context = server_context(cert, key)

    def current(self) -> ssl.SSLContext:
        """The context to use for a session starting now."""
        return self._context

    def reload(self) -> ssl.SSLContext:
        """Build a context from the same paths; swap it in only if it loads (else ``ConfigError``)."""
        with self._lock:
            fresh = server_context(self.cert_path, self.key_path)
            self._context = fresh
            return fresh


async def upgrade(
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    timeout_s: float,
) -> asyncio.Transport | None:
    """The server side of a TLS handshake on ``transport`` (STARTTLS, RFC 3207), within ``timeout_s``;
    raises ``OSError``, ``ssl.SSLError``, ``TimeoutError`` or ``ConnectionError`` when it fails."""
    loop = asyncio.get_running_loop()
    return await loop.start_tls(
        transport,  # type: ignore[arg-type]  # uvloop's transports implement the same interface
        protocol,
        context,
        server_side=True,
        ssl_handshake_timeout=timeout_s,
    )


def describe(ssl_object: ssl.SSLObject | None) -> str | None:
    """``"TLSv1.3 TLS_AES_256_GCM_SHA384"`` for the log and the Received header; None without TLS."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return f"{ssl_object.version()} {cipher[0] if cipher else '?'}"
