"""The asyncio driver of one outbound SMTP/LMTP session (``postier.smtp.client.ClientConnection``).

Theory of operation. ``SmtpConnection.open`` connects (TCP to an address, or a unix socket for
LMTP; implicit TLS when given a context) within ``connect_timeout_s``. Each operation (``greet``,
``hello``, ``starttls``, ``authenticate``, ``send``, ``quit``) writes what the engine returns, then
runs the engine until its event: it writes ``data_to_send()`` after every ``next_event``, and reads
with the engine's ``timeout_s`` (RFC 5321 §4.5.3.2) while the engine needs data. Message data is
written in 64 KiB pieces, each bounded by ``timeouts.data_block_s`` (§4.5.3.2.5).

Nothing here raises for what the network or the peer did. A failure ends the connection: the
transport is closed, the engine is told the peer is gone (so every reply it still awaited becomes its
``421 4.4.2`` "connection closed"), and ``failure`` keeps the reason, which ``explain`` puts in place
of that generic reply:

- a reply that does not come in time: ``421 4.4.2`` (RFC 3463 X.4.2 "bad connection": connected, but
  the transaction could not complete); a write that cannot finish in time: the same;
- the peer misbehaving (``RemoteProtocolError``): its ``451 4.5.0``;
- connecting fails: ``open`` returns a ``421 4.4.1`` (X.4.1 "no answer from host"): refused, timed
  out, unreachable;
- the TLS handshake fails: ``421 4.7.5`` (X.7.5 "cryptographic failure"); the certificate did not
  verify: ``421 4.7.5`` naming the reason.

The protocol object (``_Stream``) is plain ``asyncio.Protocol``, so the driver runs on uvloop as well.
STARTTLS uses ``loop.start_tls``; whatever was read after the 220 is dropped before the handshake
(RFC 3207 §4.2: a server's plaintext after 220 must not be taken as part of the TLS session).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from postier.delivery.tlsclient import describe_tls
from postier.delivery.transport import Credentials, OutboundMessage
from postier.mail.envelope import Recipient
from postier.mail.errors import RemoteProtocolError
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client.connection import ClientConnection
from postier.smtp.client.events import ClientEvent, ConnectionClosed, TransactionResult
from postier.smtp.need_data import NeedData

__all__ = ["LOST", "QUIT_TIMEOUT_S", "Endpoint", "SmtpConnection", "connect_failure"]

LOST = Reply(421, EnhancedStatus(4, 4, 2), "Connection closed by the remote server")  # the engine's own
QUIT_TIMEOUT_S = 10.0  # the mail is delivered by then: do not wait minutes for a 221
_CHUNK = 64 * 1024


def connect_failure(text: str) -> Reply:
    return Reply(421, EnhancedStatus(4, 4, 1), text)


def _timed_out(what: str) -> Reply:
    return Reply(421, EnhancedStatus(4, 4, 2), f"Timed out {what}")


def _tls_failure(text: str) -> Reply:
    return Reply(421, EnhancedStatus(4, 7, 5), text)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one connection goes: the hop's ``host`` (a name, an IP literal, or an LMTP socket's
    label) and the ``address`` it resolved to, or a ``unix_path``."""

    host: str
    address: str | None
    port: int = 25
    unix_path: str | None = None

    def __str__(self) -> str:
        """``host [ip]:port`` (Attempt.remote_mta), or ``label [unix:/path]``."""
        if self.unix_path is not None:
            return f"{self.host} [unix:{self.unix_path}]"
        return f"{self.host} [{self.address}]:{self.port}"


class _Stream(asyncio.Protocol):
    """Bytes in, with EOF; write flow control. Input waits here until the driver reads it."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.is_eof = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._readable.set()

    def eof_received(self) -> None:
        self.is_eof = True
        self._readable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_eof = True
        self._readable.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def take(self) -> bytes:
        """What has arrived (without waiting); ``b""`` with ``is_eof`` means the peer is gone."""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._readable.clear()
        return data

    async def read(self) -> bytes:
        while not self._buffer and not self.is_eof:
            self._readable.clear()
            await self._readable.wait()
        return self.take()

    async def writable(self) -> None:
        await self._writable.wait()

    @property
    def is_writable(self) -> bool:
        """The transport takes more now (below its high-water mark): no need to wait."""
        return self._writable.is_set()

    @property
    def has_input(self) -> bool:
        """``take()`` would return something (or the EOF) without waiting."""
        return bool(self._buffer) or self.is_eof


class SmtpConnection:
    """One connected session; see the module docstring. Use ``open`` to make one."""

    def __init__(
        self, endpoint: Endpoint, engine: ClientConnection, transport: asyncio.Transport, stream: _Stream
    ) -> None:
        self.endpoint = endpoint
        self.engine = engine
        self.failure: Reply | None = None
        self.messages = 0  # transactions carried
        self._transport = transport
        self._stream = stream
        self.tls = describe_tls(transport.get_extra_info("ssl_object"))
        self.verified_by: str | None = None  # "dane" / "mta-sts": the peer was authenticated so
        self.tls_failure: str | None = None  # MTA-STS testing: what enforce would have refused

    @property
    def ssl_object(self) -> object:
        """The session's ``ssl.SSLObject`` (None in plain text)."""
        return self._transport.get_extra_info("ssl_object")

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        engine: ClientConnection,
        *,
        connect_timeout_s: float,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> SmtpConnection | Reply:
        """Connect (and with ``tls``, handshake at once: implicit TLS, RFC 8314 §3.3)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout_s):
                if endpoint.unix_path is not None:
                    transport, stream = await loop.create_unix_connection(_Stream, endpoint.unix_path)
                else:
                    transport, stream = await loop.create_connection(
                        _Stream,
                        endpoint.address or endpoint.host,
                        endpoint.port,
                        ssl=tls,
                        server_hostname=server_hostname if tls is not None else None,
                        ssl_handshake_timeout=connect_timeout_s if tls is not None else None,
                    )
        except TimeoutError:
            return connect_failure("Connection timed out")
        except ssl.SSLCertVerificationError as exc:
            return _tls_failure(f"Server certificate not verified: {exc.verify_message}")
        except ssl.SSLError:
            return _tls_failure("TLS handshake failed")
        except ConnectionRefusedError:
            return connect_failure("Connection refused")
        except OSError as exc:
            return connect_failure(f"Cannot connect: {exc.strerror or 'network error'}")
        return cls(endpoint, engine, transport, stream)

    # --- state -------------------------------------------------------------------------------------

    @property
    def is_usable(self) -> bool:
        """Connected, greeted and idle: a new transaction may start."""
        return (
            self.failure is None
            and not self.engine.is_closed
            and self.engine.is_idle
            and not self._transport.is_closing()
            and not self._stream.is_eof
        )

    def poll(self) -> bool:
        """Before reuse: take what the peer sent while idle (a 421, a close) without waiting."""
        data = self._stream.take()
        if data or self._stream.is_eof:
            try:
                self.engine.receive_data(data)
                if self._stream.is_eof:
                    self.engine.receive_data(b"")
                while not isinstance(self.engine.next_event(), NeedData | ConnectionClosed):
                    pass
            except RemoteProtocolError as exc:
                self._fail(exc.reply)
        return self.is_usable

    def explain(self, reply: Reply) -> Reply:
        """``reply``, or the real reason when it is the engine's generic "connection closed"."""
        return self.failure if reply == LOST and self.failure is not None else reply

    # --- operations --------------------------------------------------------------------------------

    async def greet(self) -> Reply:
        return self._reply_of(await self._next_event())

    async def hello(self) -> Reply:
        """EHLO (LHLO): 250 with ``engine.extensions`` known, or the refusal."""
        return self._reply_of(await self._command(self.engine.ehlo()))

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> Reply:
        """STARTTLS and the handshake. The 220 when TLS is up (then send EHLO again), else why not."""
        reply = self._reply_of(await self._command(self.engine.starttls()))
        if reply.code != 220:
            return reply
        self._stream.take()  # RFC 3207 §4.2: plaintext after the 220 is never used
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self._stream,
                context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=self.engine.timeouts.command_s,
            )
        except ssl.SSLCertVerificationError as exc:
            return self._end(_tls_failure(f"Server certificate not verified: {exc.verify_message}"))
        except (OSError, TimeoutError):  # ssl.SSLError is an OSError
            return self._end(_tls_failure("TLS handshake failed"))
        if transport is None:
            return self._end(_tls_failure("TLS handshake failed"))
        self._transport = transport
        self.engine.tls_established()
        self.tls = describe_tls(transport.get_extra_info("ssl_object"))
        return reply

    async def authenticate(self, credentials: Credentials) -> Reply:
        """AUTH PLAIN or LOGIN (RFC 4954): 235 on success, else the refusal."""
        try:
            if credentials.mechanism.upper() == "LOGIN":
                command = self.engine.auth_login(credentials.username, credentials.password)
            else:
                command = self.engine.auth_plain(credentials.username, credentials.password)
        except ValueError:
            return Reply(535, EnhancedStatus(5, 7, 8), "The configured credentials cannot be sent")
        return self._reply_of(await self._command(command))

    async def send(self, message: OutboundMessage, recipients: Sequence[Recipient]) -> TransactionResult:
        """One transaction (MAIL, RCPT …, DATA, the message); its result, reply by reply."""
        env = message.envelope
        command = self.engine.send_mail(
            env.sender,
            list(recipients),
            message.body,
            smtputf8=env.smtputf8,
            ret=env.ret,
            envid=env.envid,
            requiretls=env.requiretls,
        )
        event = await self._command(command)
        self.messages += 1
        if isinstance(event, TransactionResult):
            return event
        return TransactionResult(tuple(recipients), self._reply_of(event))

    async def quit(self) -> None:
        """QUIT, waiting at most ``QUIT_TIMEOUT_S`` for the 221, then close."""
        if self.is_usable:
            try:
                async with asyncio.timeout(QUIT_TIMEOUT_S):
                    await self._command(self.engine.quit())
            except TimeoutError:
                pass
        self.close()

    def close(self) -> None:
        """Close now. Data still buffered (a peer that stopped reading, a cancelled delivery) is
        dropped: a plain ``close()`` would keep the socket and its buffer until the peer reads."""
        if self.failure is not None or self._transport.get_write_buffer_size():
            self._transport.abort()
        else:
            self._transport.close()

    # --- the engine loop ---------------------------------------------------------------------------

    async def _command(self, data: bytes) -> ClientEvent:
        if data and not await self._write(data):
            return self._fail(_timed_out("sending to the remote server"))
        return await self._next_event()

    async def _next_event(self) -> ClientEvent:
        """Run the engine until it has an event; a timeout or misbehaviour ends the connection."""
        while True:
            try:
                event = self.engine.next_event()
            except RemoteProtocolError as exc:
                return self._fail(exc.reply)
            out = self.engine.data_to_send()
            if out and not await self._write(out):
                return self._fail(_timed_out("sending to the remote server"))
            if not isinstance(event, NeedData):
                return event
            if self._stream.has_input:  # already here: no timer to arm
                data = self._stream.take()
            else:
                timeout_s = self.engine.timeout_s or self.engine.timeouts.command_s
                try:
                    async with asyncio.timeout(timeout_s):
                        data = await self._stream.read()
                except TimeoutError:
                    return self._fail(_timed_out("waiting for the remote server"))
            try:
                self.engine.receive_data(data)
            except RemoteProtocolError as exc:
                return self._fail(exc.reply)

    async def _write(self, data: bytes) -> bool:
        """Write in pieces, each within ``data_block_s``; False on timeout. A write to a closed
        transport is dropped: the EOF that comes with it ends the session."""
        view = memoryview(data)
        for start in range(0, len(view), _CHUNK):
            if self._transport.is_closing():
                return True
            self._transport.write(view[start : start + _CHUNK])
            if self._stream.is_writable:  # below the high-water mark: go on without a timer
                continue
            try:
                async with asyncio.timeout(self.engine.timeouts.data_block_s):
                    await self._stream.writable()
            except TimeoutError:
                return False
        return True

    def _fail(self, reply: Reply) -> ClientEvent:
        """End the connection for ``reply``; the engine's event for what was awaited."""
        if self.failure is None:
            self.failure = reply
        self.close()
        self.engine.receive_data(b"")
        for _ in range(10_000):
            try:
                event = self.engine.next_event()
            except RemoteProtocolError:
                continue
            if not isinstance(event, NeedData):
                return event
        return ConnectionClosed()

    def _end(self, reply: Reply) -> Reply:
        self._fail(reply)
        return self.failure or reply

    def _reply_of(self, event: ClientEvent) -> Reply:
        if isinstance(event, ConnectionClosed):
            return self.failure or LOST
        if isinstance(event, TransactionResult):
            return self.explain(event.mail)
        return self.explain(event.reply)
