"""TLS material: real handshakes on 127.0.0.1 against the server context, reload, bad files."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from postier.mail.errors import ConfigError
from postier.server.tls import TlsStore, client_context, ensure_self_signed, server_context


@dataclass
class Pair:
    cert: Path
    key: Path
    ca_file: Path


def _issue(tmp: Path, name: str, hostname: str) -> Pair:
    ca = trustme.CA()
    leaf = ca.issue_cert(hostname)
    pair = Pair(tmp / f"{name}-cert.pem", tmp / f"{name}-key.pem", tmp / f"{name}-ca.pem")
    leaf.cert_chain_pems[0].write_to_path(str(pair.cert))
    leaf.private_key_pem.write_to_path(str(pair.key))
    ca.cert_pem.write_to_path(str(pair.ca_file))
    return pair


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return _issue(tmp_path, "a", "mx.example.test")


@dataclass
class Server:
    port: int
    store: TlsStore


async def _serve(context: Callable[[], ssl.SSLContext]) -> asyncio.Server:
    """A tiny STARTTLS-style server: TLS with the context current *at accept time*, then echo lines."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(context())
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.fixture
async def server(pair: Pair) -> AsyncIterator[Server]:
    store = TlsStore(pair.cert, pair.key)
    srv = await _serve(store.current)
    port = srv.sockets[0].getsockname()[1]
    yield Server(port, store)
    srv.close()
    await srv.wait_closed()


async def _connect(
    port: int, ctx: ssl.SSLContext, hostname: str = "mx.example.test"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=hostname)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
    writer.write(text)
    await writer.drain()
    return await reader.readline()


async def test_handshake_is_tls12_or_newer(server: Server, pair: Pair) -> None:
    reader, writer = await _connect(server.port, client_context(True, pair.ca_file))
    tls = writer.get_extra_info("ssl_object")
    assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert await _echo(reader, writer, b"EHLO client\r\n") == b"EHLO client\r\n"
    await _close(writer)


async def test_tls12_client_gets_ecdhe_aead(server: Server, pair: Pair) -> None:
    ctx = client_context(True, pair.ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    _reader, writer = await _connect(server.port, ctx)
    name, version, _bits = writer.get_extra_info("ssl_object").cipher()
    assert version == "TLSv1.2"
    assert name.startswith("ECDHE-")
    assert "GCM" in name or "CHACHA20" in name
    await _close(writer)


def _legacy_client(pair: Pair, *, version: ssl.TLSVersion | None, ciphers: str) -> ssl.SSLContext:
    """A client offering what a modern server must refuse (OpenSSL's own floor lowered on purpose)."""
    ctx = client_context(True, pair.ca_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # setting TLSv1_1 warns on 3.11+
        if version is not None:
            ctx.minimum_version = version
            ctx.maximum_version = version
    ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize(
    ("version", "ciphers"),
    [
        (ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"),
        (ssl.TLSVersion.TLSv1, "DEFAULT:@SECLEVEL=0"),
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA:@SECLEVEL=0"),
        (ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256:AES256-GCM-SHA384"),  # no forward secrecy
    ],
    ids=["tls1.1", "tls1.0", "tls1.2-cbc", "tls1.2-rsa-kx"],
)
async def test_legacy_handshakes_are_refused(
    server: Server, pair: Pair, version: ssl.TLSVersion, ciphers: str
) -> None:
    ctx = _legacy_client(pair, version=version, ciphers=ciphers)
    with pytest.raises((ssl.SSLError, ConnectionError)) as info:
        _reader, writer = await _connect(server.port, ctx)
        await _close(writer)
    # The client did offer the handshake: the refusal came from the server.
    reason = getattr(info.value, "reason", None) or ""
    assert reason not in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_SIGNATURE_ALGORITHM")


def test_server_context_settings(pair: Pair) -> None:
    ctx = server_context(pair.cert, pair.key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    for flag in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_CIPHER_SERVER_PREFERENCE):
        assert ctx.options & flag
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12)


async def test_reload_swaps_for_new_sessions_only(server: Server, pair: Pair, tmp_path: Path) -> None:
    old_reader, old_writer = await _connect(server.port, client_context(True, pair.ca_file))
    before = server.store.current()

    fresh = _issue(tmp_path, "b", "new.example.test")
    pair.cert.write_bytes(fresh.cert.read_bytes())
    pair.key.write_bytes(fresh.key.read_bytes())
    assert server.store.reload() is server.store.current()
    assert server.store.current() is not before

    # A new session gets the new certificate (only the new CA and name verify) …
    reader, writer = await _connect(server.port, client_context(True, fresh.ca_file), "new.example.test")
    assert await _echo(reader, writer, b"new\r\n") == b"new\r\n"
    await _close(writer)
    # … while the session opened before the reload goes on with the old one.
    assert await _echo(old_reader, old_writer, b"old\r\n") == b"old\r\n"
    await _close(old_writer)


def test_reload_with_broken_files_keeps_the_old_context(pair: Pair) -> None:
    store = TlsStore(pair.cert, pair.key)
    before = store.current()
    pair.key.write_text("not a key\n")
    with pytest.raises(ConfigError) as info:
        store.reload()
    assert info.value.path == "tls.key"
    assert store.current() is before


def _encrypted_key(pair: Pair) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )


BAD_FILES: list[tuple[str, Callable[[Pair, Path], object], str, str]] = [
    ("missing cert", lambda p, t: p.cert.unlink(), "tls.cert", "not found"),
    ("missing key", lambda p, t: p.key.unlink(), "tls.key", "not found"),
    ("garbage cert", lambda p, t: p.cert.write_text("hello\n"), "tls.cert", "PEM certificate"),
    ("garbage key", lambda p, t: p.key.write_text("hello\n"), "tls.key", "PEM private key"),
    ("cert as key", lambda p, t: p.key.write_bytes(p.cert.read_bytes()), "tls.key", "PEM private key"),
    (
        "mismatched key",
        lambda p, t: p.key.write_bytes(_issue(t, "other", "mx.example.test").key.read_bytes()),
        "tls.key",
        "does not match",
    ),
    ("encrypted key", lambda p, t: _encrypted_key(p), "tls.key", "encrypted"),
]


@pytest.mark.parametrize(
    ("breakage", "key_path", "words"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_files_raise_config_error(
    pair: Pair, tmp_path: Path, breakage: Callable[[Pair, Path], object], key_path: str, words: str
) -> None:
    breakage(pair, tmp_path)
    with pytest.raises(ConfigError) as info:
        server_context(pair.cert, pair.key)
    assert info.value.path == key_path
    assert words in info.value.message
    with pytest.raises(ConfigError):
        TlsStore(pair.cert, pair.key)


def test_self_signed_is_made_once_and_reused(tmp_path: Path) -> None:
    now = datetime(2026, 11, 29, 6, 40, tzinfo=UTC)
    cert, key, created = ensure_self_signed(tmp_path, "mx.example.test", now=now)
    assert created
    assert (cert, key) == (tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not [p for p in cert.parent.iterdir() if p.name.endswith(".tmp")]

    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx.example.test"]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 360 <= lifetime.days <= 370

    cert_bytes, key_bytes = cert.read_bytes(), key.read_bytes()
    again = ensure_self_signed(tmp_path, "mx.example.test")
    assert again == (cert, key, False)
    assert (cert.read_bytes(), key.read_bytes()) == (cert_bytes, key_bytes)


def test_self_signed_replaces_a_lone_key(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "key.pem").write_text("left over by a crash\n")
    cert, key, created = ensure_self_signed(tmp_path, "127.0.0.1")
    assert created
    server_context(cert, key)  # the pair matches
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


async def test_self_signed_handshake(tmp_path: Path) -> None:
    cert, key, _ = ensure_self_signed(tmp_path, "localhost")
    store = TlsStore(cert, key)
    srv = await _serve(store.current)
    port = srv.sockets[0].getsockname()[1]
    try:
        # Opportunistic (unverified) delivery-style client, then a client that pins the certificate.
        for ctx in (client_context(False), client_context(True, cert)):
            reader, writer = await _connect(port, ctx, "localhost")
            assert await _echo(reader, writer, b"hi\r\n") == b"hi\r\n"
            await _close(writer)
    finally:
        srv.close()
        await srv.wait_closed()


async def test_verifying_client_refuses_unknown_ca(server: Server, tmp_path: Path) -> None:
    stranger = _issue(tmp_path, "s", "mx.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _connect(server.port, client_context(True, stranger.ca_file))
