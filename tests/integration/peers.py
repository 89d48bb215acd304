"""Real SMTP peers on loopback for outbound-delivery tests: Postfix ``smtp-sink`` and aiosmtpd.

Addresses. Every peer listens on its own 127.0.0.N (N = 2 … 254, handed out in turn by
``loopback_address()``; 127.0.0.1 is left to the harness and the DNS responder), on port 25 by
default, so an MX or A record in a test can point at it and the courier connects to port 25 as it
does in production. An address is handed out only when nothing listens on (address, port) (checked by
binding it, never by connecting, so no peer ever counts a stray connection). Sockets left in
TIME_WAIT do not block a new listener: smtp-sink and asyncio both set SO_REUSEADDR.

``smtp_sink`` (fixture, a factory): ``sink = smtp_sink(reject_soft=["RCPT"])`` runs
``smtp-sink -u root -v -c -d DUMP/%M. 127.0.0.N:25 64`` with the chosen options (see
``SinkOptions``; from ``man smtp-sink``: ``-r`` answers the listed commands 4xx, ``-f`` 5xx,
``-Q`` 421 and disconnect, ``-q`` disconnect, ``CONNECT`` names the greeting; ``-p`` no PIPELINING,
``-N`` no DSN, ``-8`` no 8BITMIME, ``-e`` no ESMTP at all, ``-L`` LMTP). What it saw:

- ``sink.messages()``: each accepted transaction from the dump directory: ``helo``, ``mail_args``
  (``<sender> SIZE=…``), ``rcpt_args`` and the ``body`` as received (after smtp-sink's own header
  block). smtp-sink accepts every recipient not refused by the options.
- ``sink.connections()``: how many TCP connections it accepted (``connect (`` lines of ``-v``, logged
  before the greeting is sent: once a client has read a greeting, its connection is counted).
- ``sink.commands()``: the command lines it read, in order (the ``-v`` log).
- ``await sink.wait_messages(n)``: wait (bounded) until n transactions are on disk.

``aiosmtpd_peer`` (async fixture, a factory): ``peer = await aiosmtpd_peer(...)`` serves aiosmtpd
on this test's event loop (no thread), with a ``RecordingHandler`` that records each message
(``peer.messages``: sender, recipients, MAIL/RCPT parameters, body, whether over TLS, the AUTH
login) and counts TCP connections (``peer.connections``; STARTTLS does not count twice). Options:
``refuse_rcpt={"x@y": "550 5.1.1 No such user"}``, ``starttls=context`` (offer STARTTLS with this
server context), ``implicit_tls=context`` (TLS from the first byte), ``users={"login": "password"}``
(offer AUTH PLAIN/LOGIN; with ``require_auth`` MAIL without AUTH gets 530), ``size_limit``
(announced as SIZE; bigger DATA is refused 552), ``smtputf8=False`` (no SMTPUTF8), ``port``.

Certificates: ``tls_ca`` (fixture) is a trustme CA; ``server_context(ca, host)`` gives a server
``SSLContext`` with a leaf for ``host`` (a DNS name or an IP address). A certificate nobody can
verify ("self-signed" for the courier) is one from a second ``trustme.CA()`` whose root the client is
never given.

``StaticResolver``: a fake ``postier.dns.Resolver`` (same protocol, answers from tables) to point
host names at these peers; ``rcpt`` and ``outbound`` build recipients and ``OutboundMessage``s.

Everything is importable from here; the smtp-sink part lives in ``smtpsink.py`` and the address
allocator in ``loopback.py``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SmtpdEnvelope

from postier.delivery.transport import OutboundMessage
from postier.dns import MxRecord, NoData, NxDomain, TemporaryDnsError
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Notify, Recipient
from tests.integration.loopback import loopback_address
from tests.integration.smtpsink import SinkMessage, SinkOptions, SmtpSink, smtp_sink

__all__ = [
    "AiosmtpdPeer",
    "ReceivedMessage",
    "RecordingHandler",
    "SinkMessage",
    "SinkOptions",
    "SmtpSink",
    "StaticResolver",
    "aiosmtpd_peer",
    "loopback_address",
    "outbound",
    "rcpt",
    "server_context",
    "smtp_sink",
    "start_aiosmtpd",
    "tls_ca",
]

# --- certificates ----------------------------------------------------------------------------------


@pytest.fixture
def tls_ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    """A server context with a leaf certificate for ``hosts`` issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


# --- aiosmtpd --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMessage:
    sender: str
    recipients: tuple[str, ...]
    mail_options: tuple[str, ...]
    rcpt_options: tuple[tuple[str, ...], ...]
    body: bytes
    is_tls: bool
    auth_login: str | None


@dataclass
class RecordingHandler:
    """aiosmtpd handler recording every accepted message; refuses listed recipients."""

    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    require_auth: bool = False
    messages: list[ReceivedMessage] = field(default_factory=list)
    connections: int = 0
    logins: list[str] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SmtpdEnvelope, address: str, options: list[str]
    ) -> str:
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SmtpdEnvelope, address: str, options: list[str]
    ) -> str:
        refusal = self.refuse_rcpt.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpdEnvelope) -> str:
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        self.messages.append(
            ReceivedMessage(
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                mail_options=tuple(envelope.mail_options),
                rcpt_options=tuple(tuple(o) for o in envelope.rcpt_options),
                body=content,
                is_tls=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
                auth_login=session.auth_data if isinstance(session.auth_data, str) else None,
            )
        )
        return "250 2.0.0 OK queued"

    def authenticator(self, users: dict[str, str]) -> Callable[..., AuthResult]:
        def check(
            server: SMTP, session: Session, envelope: SmtpdEnvelope, mechanism: str, data: Any
        ) -> AuthResult:
            if not isinstance(data, LoginPassword):
                return AuthResult(success=False, handled=False)
            login, password = data.login.decode(), data.password.decode()
            self.logins.append(f"{mechanism} {login}")
            ok = users.get(login) == password
            return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

        return check


class _CountingSMTP(SMTP):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and self.transport is None:  # not the STARTTLS re-entry
            self.event_handler.connections += 1
        super().connection_made(transport)


@dataclass
class AiosmtpdPeer:
    address: str
    port: int
    handler: RecordingHandler
    server: asyncio.Server

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    @property
    def connections(self) -> int:
        return self.handler.connections


async def start_aiosmtpd(
    *,
    refuse_rcpt: dict[str, str] | None = None,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    users: dict[str, str] | None = None,
    require_auth: bool = False,
    size_limit: int | None = None,
    port: int = 25,
    address: str | None = None,
    hostname: str = "peer.test",
    smtputf8: bool = True,
) -> AiosmtpdPeer:
    """Serve aiosmtpd on the running loop (see ``aiosmtpd_peer``); ``peer.server.close()`` stops it."""
    handler = RecordingHandler({k.lower(): v for k, v in (refuse_rcpt or {}).items()}, require_auth)
    kwargs: dict[str, Any] = {
        "hostname": hostname,
        "tls_context": starttls,
        "data_size_limit": size_limit,
        "enable_SMTPUTF8": smtputf8,
        "auth_require_tls": False,
    }
    if users is not None:
        kwargs["authenticator"] = handler.authenticator(users)
    loop = asyncio.get_running_loop()
    address = address or loopback_address(port)
    server = await loop.create_server(
        lambda: _CountingSMTP(handler, loop=loop, **kwargs), address, port, ssl=implicit_tls
    )
    return AiosmtpdPeer(address, port, handler, server)


@pytest.fixture
async def aiosmtpd_peer() -> AsyncIterator[Callable[..., Any]]:
    """Async factory: ``await aiosmtpd_peer(refuse_rcpt=…, starttls=ctx, implicit_tls=ctx,
    users={…}, require_auth=True, size_limit=N, port=25, address=None, hostname="peer.test",
    smtputf8=True)``."""
    peers: list[AiosmtpdPeer] = []

    async def start(**options: Any) -> AiosmtpdPeer:
        peer = await start_aiosmtpd(**options)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.server.close()
        await peer.server.wait_closed()


# --- outbound messages ---------------------------------------------------------------------------


def rcpt(text: str, notify: frozenset[Notify] | None = None) -> Recipient:
    """``Recipient`` for ``"user@domain"``."""
    local, domain = text.rsplit("@", 1)
    return Recipient(Address(local, domain), notify=notify)


def outbound(
    recipients: Sequence[Recipient], body: bytes, sender: str | None = "a@sender.test"
) -> OutboundMessage:
    """An ``OutboundMessage`` (queue id Q1) from ``sender`` (None: ``<>``) to ``recipients``."""
    address = None if sender is None else Address(*sender.rsplit("@", 1))
    return OutboundMessage("Q1", Envelope(address, tuple(recipients)), body)


# --- DNS -------------------------------------------------------------------------------------------


class StaticResolver:
    """A fake ``postier.dns.Resolver`` answering from tables: ``hosts`` maps a name to its
    addresses (absent: NxDomain; empty list: NoData); ``temporary`` names raise TemporaryDnsError;
    ``mx`` maps a domain to its records. Records every ``addresses`` lookup in ``asked``."""

    def __init__(
        self,
        hosts: dict[str, list[str]] | None = None,
        *,
        mx: dict[str, list[MxRecord]] | None = None,
        temporary: Sequence[str] = (),
    ) -> None:
        self.hosts = dict(hosts or {})
        self.mx_records = dict(mx or {})
        self.temporary = set(temporary)
        self.asked: list[str] = []

    def _check(self, name: str, rdtype: str) -> None:
        if name in self.temporary:
            raise TemporaryDnsError(name, rdtype, "SERVFAIL")

    async def mx(self, domain: str) -> list[MxRecord]:
        self._check(domain, "MX")
        if domain not in self.mx_records:
            raise NxDomain(domain, "MX")
        if not self.mx_records[domain]:
            raise NoData(domain, "MX")
        return self.mx_records[domain]

    async def addresses(self, host: str) -> list[str]:
        self.asked.append(host)
        self._check(host, "A")
        if host not in self.hosts:
            raise NxDomain(host, "A")
        if not self.hosts[host]:
            raise NoData(host, "A")
        return list(self.hosts[host])

    async def txt(self, name: str) -> list[str]:
        self._check(name, "TXT")
        raise NxDomain(name, "TXT")
