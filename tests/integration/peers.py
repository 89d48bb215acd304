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
(announced as SIZE; bigger DATA is refused 552), ``port``.

Certificates: ``tls_ca`` (fixture) is a trustme CA; ``server_context(ca, host)`` gives a server
``SSLContext`` with a leaf for ``host`` (a DNS name or an IP address). A certificate nobody can
verify ("self-signed" for the courier) is one from a second ``trustme.CA()`` whose root the client is
never given.

``StaticResolver``: a fake ``postier.dns.Resolver`` (same protocol, answers from tables) to point
host names at these peers.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SmtpdEnvelope

from postier.delivery.transport import OutboundMessage
from postier.dns import MxRecord, NoData, NxDomain, TemporaryDnsError
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Notify, Recipient

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

_HOSTS = itertools.cycle(range(2, 255))


def _is_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def loopback_address(port: int = 25) -> str:
    """The next 127.0.0.N (N ≥ 2) on which nothing listens on ``port``."""
    for _ in range(253):
        address = f"127.0.0.{next(_HOSTS)}"
        if _is_free(address, port):
            return address
    raise RuntimeError(f"no free 127.0.0.N for port {port}")


# --- certificates ----------------------------------------------------------------------------------


@pytest.fixture
def tls_ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    """A server context with a leaf certificate for ``hosts`` issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


# --- smtp-sink -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkOptions:
    """smtp-sink switches. Command names: CONNECT, HELO, EHLO, LHLO, MAIL, RCPT, DATA, ".", RSET …"""

    reject_soft: Sequence[str] = ()  # -r: answer 4xx (CONNECT: a 4xx greeting)
    reject_hard: Sequence[str] = ()  # -f: answer 5xx
    disconnect_421: Sequence[str] = ()  # -Q: 421 and hang up
    hang_up: Sequence[str] = ()  # -q: hang up without a reply
    pipelining: bool = True  # -p when False
    dsn: bool = True  # -N when False
    eight_bit: bool = True  # -8 when False
    esmtp: bool = True  # -e when False
    lmtp: bool = False  # -L
    hostname: str = "sink.test"  # -h
    extra: Sequence[str] = ()

    def args(self) -> list[str]:
        out = ["-h", self.hostname]
        for flag, commands in (
            ("-r", self.reject_soft),
            ("-f", self.reject_hard),
            ("-Q", self.disconnect_421),
            ("-q", self.hang_up),
        ):
            if commands:
                out += [flag, ",".join(commands)]
        for flag, on in (
            ("-p", self.pipelining),
            ("-N", self.dsn),
            ("-8", self.eight_bit),
            ("-e", self.esmtp),
        ):
            if not on:
                out.append(flag)
        if self.lmtp:
            out.append("-L")
        return out + list(self.extra)


@dataclass(frozen=True)
class SinkMessage:
    helo: str | None
    mail_args: str
    rcpt_args: tuple[str, ...]
    body: bytes

    @property
    def sender(self) -> str:
        return self.mail_args.split(" ", 1)[0].strip("<>")

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(r.split(" ", 1)[0].strip("<>") for r in self.rcpt_args)


_SINK_HEADER = re.compile(rb"^(X-[A-Za-z-]+): (.*)$")


def _parse_dump(raw: bytes) -> SinkMessage:
    """One ``-d`` file: X-* lines, a 3-line Received header, the message, a blank line (LF endings)."""
    lines = raw.split(b"\n")
    fields: list[tuple[str, str]] = []
    i = 0
    while i < len(lines) and (m := _SINK_HEADER.match(lines[i])):
        fields.append((m.group(1).decode(), m.group(2).decode("utf-8", "replace")))
        i += 1
    i += 3  # Received: from …, by …, date
    body = b"\n".join(lines[i:])
    body = body[:-1] if body.endswith(b"\n\n") else body  # smtp-sink's trailing empty line
    get = dict(fields)
    return SinkMessage(
        helo=get.get("X-Helo-Args"),
        mail_args=get.get("X-Mail-Args", ""),
        rcpt_args=tuple(v for k, v in fields if k == "X-Rcpt-Args"),
        body=body.replace(b"\n", b"\r\n"),
    )


class SmtpSink:
    """One running smtp-sink (see the module docstring)."""

    def __init__(self, workdir: Path, options: SinkOptions, address: str, port: int) -> None:
        self.address, self.port, self.options = address, port, options
        self.dump_dir = workdir / "dump"
        self.dump_dir.mkdir(parents=True)
        self.log_path = workdir / "sink.log"
        self.counters_path = workdir / "counters"
        with self.log_path.open("wb") as log, self.counters_path.open("wb") as counters:
            argv = ["smtp-sink", "-u", "root", "-v", "-c", "-d", f"{self.dump_dir}/%M.", *options.args()]
            self.proc = subprocess.Popen(
                [*argv, f"{address}:{port}", "64"],
                stdout=counters,
                stderr=log,
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        for _ in range(400):
            if self.proc.poll() is not None:
                raise RuntimeError(f"smtp-sink exited: {self.log_path.read_text(errors='replace')}")
            if not _is_free(self.address, self.port):
                return
            time.sleep(0.025)
        raise RuntimeError("smtp-sink did not start listening")

    def messages(self) -> list[SinkMessage]:
        files = sorted(self.dump_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [_parse_dump(p.read_bytes()) for p in files]

    async def wait_messages(self, count: int, timeout_s: float = 20.0) -> list[SinkMessage]:
        async with asyncio.timeout(timeout_s):
            while len(found := self.messages()) < count:
                await asyncio.sleep(0.02)
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connections(self) -> int:
        return sum(1 for line in self.log().splitlines() if line.startswith("smtp-sink: connect ("))

    def commands(self) -> list[str]:
        """Command lines read, in order (from the -v log: ``smtp-sink: MAIL FROM:<…>``)."""
        verbs = (
            "HELO",
            "EHLO",
            "LHLO",
            "MAIL",
            "RCPT",
            "DATA",
            ".",
            "RSET",
            "NOOP",
            "QUIT",
            "AUTH",
            "STARTTLS",
        )
        out = []
        for line in self.log().splitlines():
            text = line.removeprefix("smtp-sink: ")
            if text.split(" ", 1)[0].upper() in verbs:
                out.append(text)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def smtp_sink() -> Iterator[Callable[..., SmtpSink]]:
    """Factory: ``smtp_sink(port=25, address=None, **SinkOptions fields)`` → a running ``SmtpSink``
    (``address``: reuse one, e.g. to restart a peer on the address a test already uses)."""
    sinks: list[SmtpSink] = []
    # Not tmp_path: smtp-sink's dump files must be writable after it drops privileges (-u root keeps them).
    workroot = Path(tempfile.mkdtemp(prefix="postier-sink-"))

    def start(port: int = 25, address: str | None = None, **options: Any) -> SmtpSink:
        address = address or loopback_address(port)
        sink = SmtpSink(workroot / str(len(sinks)), SinkOptions(**options), address, port)
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()
    shutil.rmtree(workroot, ignore_errors=True)


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
) -> AiosmtpdPeer:
    """Serve aiosmtpd on the running loop (see ``aiosmtpd_peer``); ``peer.server.close()`` stops it."""
    handler = RecordingHandler({k.lower(): v for k, v in (refuse_rcpt or {}).items()}, require_auth)
    kwargs: dict[str, Any] = {
        "hostname": hostname,
        "tls_context": starttls,
        "data_size_limit": size_limit,
        "enable_SMTPUTF8": True,
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
    users={…}, require_auth=True, size_limit=N, port=25, address=None, hostname="peer.test")``."""
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
