"""The sans-IO SMTP/LMTP client engine (RFC 5321, RFC 2033), driven by the courier.

Theory of operation. Methods named after commands (``ehlo``, ``starttls``, ``auth_plain``,
``send_mail``, ``rset``, ``quit`` …) return the bytes to write. The driver feeds what it reads to
``receive_data`` and asks ``next_event`` what it means; some replies make the engine send more on its
own (HELO after a refused EHLO, the message after 354, the next AUTH LOGIN step, RSET after a refused
transaction), so after every ``next_event`` the driver writes ``data_to_send()``. One operation runs
at a time: start the next one once its event has come. ``timeout_s`` says how long to wait for the
reply now expected (RFC 5321 §4.5.3.2); while writing message data, each write is bounded by
``timeouts.data_block_s``.

The engine keeps a queue of the replies it expects, one per command sent, so with PIPELINING (RFC 2920)
MAIL, every RCPT and DATA go out in one flight and each reply is matched to its command. The message
follows the 354 only when at least one recipient was accepted; if none was and the server says 354
anyway, a lone ``.`` ends the empty data (RFC 2920 §3.1). A transaction the server opened (MAIL
accepted) that ends without data is closed with RSET before its ``TransactionResult`` is given. In
LMTP the end of data has one reply per accepted recipient (RFC 2033 §4.2).

Misbehaviour of the server raises ``RemoteProtocolError`` (see ``replies``): malformed or
unexpected replies. A 421 at any point, or the connection closing while replies are awaited, ends the
engine; whatever was still awaited gets that 421 (a synthetic ``421 4.4.2`` for a lost connection), so
every recipient still gets a reply to be judged by. Calling a method in the wrong state is a bug of
the caller: ``ClientStateError``.
"""

from __future__ import annotations

from collections import deque

from postier.mail.address import Address
from postier.mail.envelope import Recipient, Ret
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client import sasl
from postier.smtp.client.events import (
    AuthResult,
    ClientEvent,
    ClientTimeouts,
    CommandReply,
    ConnectionClosed,
    ExtensionsKnown,
    Greeting,
    TransactionResult,
)
from postier.smtp.client.message import check_message, mail_line, needs_smtputf8, prepare_message, rcpt_line
from postier.smtp.client.replies import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    Extensions,
    ReplyReader,
    parse_extensions,
    protocol_error,
)
from postier.smtp.client.txn import TXN_KINDS, Kind, Transaction, fill, next_unpipelined
from postier.smtp.need_data import NEED_DATA, NeedData

__all__ = ["ClientConnection", "ClientStateError"]


class ClientStateError(RuntimeError):
    """A method was called when the engine cannot do it (a bug in the driver, not the peer)."""


class ClientConnection:
    """One SMTP (or LMTP) client session, without I/O. See the module docstring."""

    def __init__(
        self,
        *,
        local_hostname: str,
        lmtp: bool = False,
        timeouts: ClientTimeouts | None = None,
        max_reply_line: int = MAX_REPLY_LINE,
        max_reply_lines: int = MAX_REPLY_LINES,
    ) -> None:
        self.local_hostname = local_hostname
        self.lmtp = lmtp
        self.timeouts = timeouts or ClientTimeouts()
        self._reader = ReplyReader(max_line=max_reply_line, max_lines=max_reply_lines)
        self._expect: deque[Kind] = deque([Kind.GREETING])
        self._replies: deque[Reply] = deque()
        self._events: deque[ClientEvent] = deque()
        self._outbox = bytearray()
        self._extensions: Extensions | None = None
        self._is_greeted = False
        self._is_tls = False
        self._tls_pending = False  # 220 to STARTTLS received; waiting for tls_established()
        self._is_closed = False
        self._eof = False
        self._txn: Transaction | None = None
        self._auth: sasl.AuthExchange | None = None

    # --- properties --------------------------------------------------------------------------------

    @property
    def extensions(self) -> Extensions | None:
        """What the last EHLO offered (empty after HELO); None before EHLO and after STARTTLS."""
        return self._extensions

    @property
    def is_tls(self) -> bool:
        return self._is_tls

    @property
    def is_closed(self) -> bool:
        """QUIT answered, a 421 received or the peer gone: the driver closes the connection."""
        return self._is_closed

    @property
    def is_idle(self) -> bool:
        """No reply awaited and no event waiting: a new operation may start."""
        return not (self._expect or self._replies or self._events or self._tls_pending)

    @property
    def timeout_s(self) -> float | None:
        """How long to wait for the reply now awaited (RFC 5321 §4.5.3.2); None when none is."""
        if not self._expect or self._tls_pending:
            return None
        t = self.timeouts
        kind = self._expect[0]
        if kind is Kind.RCPT:
            return t.rcpt_s
        if kind is Kind.MAIL:
            return t.mail_s
        if kind is Kind.DATA:
            return t.data_init_s
        if kind is Kind.DATA_END:
            return t.data_end_s
        return t.greeting_s if kind is Kind.GREETING else t.command_s

    # --- input -------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means it closed the connection. Raises RemoteProtocolError."""
        if not data:
            self._eof = True
            return
        if self._is_closed or self._tls_pending:
            return  # RFC 3207 §4.2: plaintext after the 220 to STARTTLS is never read
        for reply in self._reader.feed(data):
            awaited = len(self._replies)
            if awaited >= len(self._expect) and reply.code != 421:
                raise protocol_error("Unexpected reply from the remote server")
            self._replies.append(reply)
            if awaited < len(self._expect) and self._expect[awaited] is Kind.STARTTLS and reply.code == 220:
                self._tls_pending = True  # RFC 3207 §4.2: drop whatever came after the 220
                self._reader = ReplyReader(max_line=self._reader.max_line, max_lines=self._reader.max_lines)
                return
            if len(self._replies) > len(self._expect) + 1:
                raise protocol_error("Unexpected reply from the remote server")

    def next_event(self) -> ClientEvent | NeedData:
        """The next event, or NEED_DATA. Once the peer has closed and every event is out, always
        ``ConnectionClosed``. Raises RemoteProtocolError when the peer misbehaved."""
        while not self._events and self._replies:
            reply = self._replies.popleft()
            if not self._expect:
                self._abort(reply)  # an unsolicited 421 (receive_data refuses any other)
            elif reply.code == 421:
                self._abort(reply)
            else:
                self._on_reply(self._expect.popleft(), reply)
        if self._events:
            return self._events.popleft()
        if self._eof and not self._is_closed:
            if self._expect:
                self._abort(Reply(421, EnhancedStatus(4, 4, 2), "Connection closed by the remote server"))
                return self._events.popleft()
            self._is_closed = True
        return ConnectionClosed() if self._eof else NEED_DATA

    def data_to_send(self) -> bytes:
        """Bytes the engine decided to send on its own while reading replies; write them now."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    # --- one-step commands -------------------------------------------------------------------------

    def ehlo(self) -> bytes:
        """EHLO (LHLO in LMTP, RFC 2033 §4.1). A 5xx to EHLO makes the engine try HELO by itself."""
        self._ready(need_hello=False)
        return self._command(Kind.EHLO, f"{'LHLO' if self.lmtp else 'EHLO'} {self.local_hostname}")

    def starttls(self) -> bytes:
        """STARTTLS (RFC 3207). On its 220: do the handshake, then ``tls_established()``, then EHLO."""
        extensions = self._ready()
        if not extensions.has("STARTTLS") or self._is_tls:
            local = Reply(454, EnhancedStatus(4, 7, 0), "The remote server does not offer STARTTLS")
            self._events.append(CommandReply("STARTTLS", local, is_local=True))
            return b""
        return self._command(Kind.STARTTLS, "STARTTLS")

    def tls_established(self) -> None:
        """After the TLS handshake: all that was learned is forgotten; send EHLO again (RFC 3207 §4.2)."""
        if not self._tls_pending:
            raise ClientStateError("tls_established() without a 220 to STARTTLS")
        self._tls_pending = False
        self._is_tls = True
        self._extensions = None
        self._replies.clear()

    def rset(self) -> bytes:
        self._ready(need_hello=False)
        return self._command(Kind.RSET, "RSET")

    def noop(self) -> bytes:
        self._ready(need_hello=False)
        return self._command(Kind.NOOP, "NOOP")

    def quit(self) -> bytes:
        self._ready(need_hello=False)
        return self._command(Kind.QUIT, "QUIT")

    # --- AUTH (RFC 4954) ---------------------------------------------------------------------------

    def auth_plain(self, user: str, password: str) -> bytes:
        """AUTH PLAIN with the initial response (RFC 4616 §2)."""
        return self._auth_start(sasl.plain(user, password))

    def auth_login(self, user: str, password: str) -> bytes:
        """AUTH LOGIN: the user name and the password, each after its 334 challenge."""
        return self._auth_start(sasl.login(user, password))

    def _auth_start(self, exchange: sasl.AuthExchange) -> bytes:
        extensions, mechanism = self._ready(), exchange.mechanism
        if mechanism not in extensions.auth_mechanisms:
            text = f"The remote server does not offer AUTH {mechanism}"
            self._events.append(AuthResult(Reply(504, EnhancedStatus(5, 7, 4), text), mechanism, True))
            return b""
        self._auth = exchange
        return self._command(Kind.AUTH, exchange.line)

    # --- the mail transaction ------------------------------------------------------------------------

    def send_mail(
        self,
        sender: Address | None,
        recipients: list[Recipient],
        body: bytes,
        *,
        smtputf8: bool = False,
        ret: Ret | None = None,
        envid: str | None = None,
        requiretls: bool = False,
    ) -> bytes:
        """Start one transaction; its ``TransactionResult`` comes as an event. When the peer cannot take
        the message (SIZE, SMTPUTF8, 8BITMIME; see ``message``) nothing is sent: the result
        comes at once, ``is_local``, with the refusal as the MAIL reply."""
        extensions = self._ready()
        if not recipients:
            raise ClientStateError("send_mail() needs at least one recipient")
        message = prepare_message(body)
        required = needs_smtputf8(sender, recipients, smtputf8, body)
        refusal = check_message(message, required, extensions)
        if refusal is not None:
            self._events.append(TransactionResult(tuple(recipients), refusal, is_local=True))
            return b""
        utf8 = (smtputf8 or required) and extensions.has("SMTPUTF8")  # pass the flag on when we can
        commands = [
            mail_line(sender, message, extensions, utf8=utf8, ret=ret, envid=envid, requiretls=requiretls)
        ]
        commands += [rcpt_line(r, extensions) for r in recipients]
        commands.append(b"DATA\r\n")
        # RFC 2033 §4.2: LMTP servers pipeline; RFC 2920: SMTP ones say so with PIPELINING.
        pipelined = extensions.has("PIPELINING") or self.lmtp
        self._txn = Transaction(tuple(recipients), message, commands, pipelined)
        if pipelined:
            self._expect.extend([Kind.MAIL] + [Kind.RCPT] * len(recipients) + [Kind.DATA])
            return b"".join(commands)
        self._expect.append(Kind.MAIL)
        return commands[0]

    # --- replies -----------------------------------------------------------------------------------

    def _on_reply(self, kind: Kind, reply: Reply) -> None:
        if kind in TXN_KINDS:
            self._on_txn_reply(kind, reply)
        elif kind is Kind.GREETING:
            self._is_greeted = True
            self._events.append(Greeting(reply))
        elif kind is Kind.EHLO:
            self._on_ehlo(reply)
        elif kind is Kind.HELO and reply.code == 250:
            self._extensions = Extensions()
            self._events.append(ExtensionsKnown(reply, self._extensions, "HELO"))
        elif kind is Kind.AUTH:
            self._on_auth(reply)
        else:
            if kind is Kind.QUIT:
                self._is_closed = True
            self._events.append(CommandReply(kind.name, reply))

    def _on_ehlo(self, reply: Reply) -> None:
        verb = "LHLO" if self.lmtp else "EHLO"
        if reply.code == 250:
            self._extensions = parse_extensions(reply)
            self._events.append(ExtensionsKnown(reply, self._extensions, verb))
        elif reply.code >= 500 and not self.lmtp:  # RFC 5321 §4.1.4: an old server; try HELO
            self._queue(Kind.HELO, f"HELO {self.local_hostname}")
        else:
            self._events.append(CommandReply(verb, reply))

    def _on_auth(self, reply: Reply) -> None:
        auth = self._auth
        assert auth is not None
        if reply.code == 334:  # RFC 4954 §4: a challenge
            self._queue(Kind.AUTH, auth.respond())
            return
        self._auth = None
        self._events.append(AuthResult(reply, auth.mechanism))

    def _on_txn_reply(self, kind: Kind, reply: Reply) -> None:
        txn = self._txn
        assert txn is not None
        if kind is Kind.MAIL:
            txn.mail = reply
            if not txn.is_pipelined:
                self._send_next_or_finish(txn, go_on=reply.code < 300)
        elif kind is Kind.RCPT:
            txn.rcpts.append(reply)
            if not txn.is_pipelined:
                self._send_next_or_finish(txn, go_on=True)
        elif kind is Kind.DATA:
            self._on_data(txn, reply)
        elif kind is Kind.DATA_END:
            txn.data_end.append(reply)
            if not self._expect or self._expect[0] is not Kind.DATA_END:
                self._finish()
        else:
            txn.reset = reply
            self._finish()

    def _send_next_or_finish(self, txn: Transaction, *, go_on: bool) -> None:
        """Without PIPELINING: the next RCPT, then DATA if a recipient was accepted; else stop."""
        step = next_unpipelined(txn) if go_on else None
        if step is not None:
            self._queue(*step)
        elif go_on:
            self._queue(Kind.TXN_RSET, b"RSET")  # nobody accepted: reset, then finish
        else:
            self._finish()

    def _on_data(self, txn: Transaction, reply: Reply) -> None:
        txn.data = reply
        if reply.code == 354:
            accepted = txn.accepted
            # RFC 2920 §3.1: 354 with no accepted recipient: end the data at once with a lone ".".
            self._outbox += txn.message.wire if accepted else b".\r\n"
            self._expect.extend([Kind.DATA_END] * (accepted if self.lmtp and accepted else 1))
        elif txn.mail is not None and txn.mail.code < 300:
            self._queue(Kind.TXN_RSET, b"RSET")  # the server still holds the open transaction
        else:
            self._finish()

    def _finish(self) -> None:
        txn, self._txn = self._txn, None
        assert txn is not None
        self._events.append(txn.result())

    def _abort(self, reply: Reply) -> None:
        """A 421 (or the connection lost): every awaited reply is this one; the engine is done."""
        kinds = list(self._expect)
        self._expect.clear()
        self._replies.clear()
        self._is_closed = True
        txn, auth = self._txn, self._auth
        self._txn = self._auth = None
        if txn is not None:
            self._events.append(fill(txn, reply, kinds, lmtp=self.lmtp).result())
        elif auth is not None:
            self._events.append(AuthResult(reply, auth.mechanism))
        elif kinds and kinds[0] is Kind.GREETING:
            self._is_greeted = True
            self._events.append(Greeting(reply))
        else:
            verb = ("LHLO" if self.lmtp else "EHLO") if kinds and kinds[0] is Kind.EHLO else ""
            self._events.append(CommandReply(verb or (kinds[0].name if kinds else ""), reply))

    # --- helpers -----------------------------------------------------------------------------------

    def _ready(self, *, need_hello: bool = True) -> Extensions:
        if self._is_closed or not self._is_greeted or self._tls_pending:
            raise ClientStateError("the connection is not ready for a command")
        if self._expect or self._replies or self._txn is not None or self._auth is not None:
            raise ClientStateError("another command is still awaiting its reply")
        if need_hello and self._extensions is None:
            raise ClientStateError("send EHLO first")
        return self._extensions or Extensions()

    def _command(self, kind: Kind, line: str) -> bytes:
        self._expect.append(kind)
        return f"{line}\r\n".encode()

    def _queue(self, kind: Kind, line: str | bytes) -> None:
        """A command the engine sends on its own, through ``data_to_send``."""
        raw = line.encode() if isinstance(line, str) else line
        self._expect.append(kind)
        self._outbox += raw if raw.endswith(b"\r\n") else raw + b"\r\n"
