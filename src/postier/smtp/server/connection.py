"""The sans-IO SMTP server engine (RFC 5321, with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
ENHANCEDSTATUSCODES, CHUNKING, BINARYMIME, DSN, STARTTLS and AUTH).

Theory of operation. The driver feeds bytes to ``receive_data``, asks ``next_event`` what they mean and
answers every event with one ``send(reply)``, in order; ``send`` returns the wire bytes and moves the
state on by what the reply answers (``state.TRANSITIONS``). The next event comes only once the previous
one is answered, so pipelined commands (RFC 2920) are answered in order. No I/O, no clock, and client
input never raises: bad input is a ``Rejected`` event with the RFC's reply. ``handlers`` turns command
lines into events, ``grammar`` holds the syntax, ``framing`` the DATA and BDAT readers, ``ehlo`` the EHLO
reply. Choices: EXPN gets 502 5.5.1 (VRFY never confirms: 252). Every 5xx ``Rejected`` counts; once
``max_errors`` are answered the next event is ``Rejected(S.TOO_MANY_ERRORS, close=True)`` (4xx refusals
do not count). After a failed BDAT chunk later chunks are read, discarded and get the same reply; BDAT
LAST ends the failed transaction (RFC 3030 §2). A 554 greeting refuses the session: only QUIT is
served, all else gets 503 (RFC 5321 §3.1). Any 421 sent closes the engine.
"""

from __future__ import annotations

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.smtp.framing import ChunkReader, DataReader
from postier.smtp.need_data import NEED_DATA, NeedData
from postier.smtp.server.ehlo import ehlo_reply
from postier.smtp.server.events import (
    AuthCancelled,
    AuthResponse,
    ChunkReceived,
    Event,
    Hello,
    MailFrom,
    MessageData,
    RcptTo,
    Rejected,
)
from postier.smtp.server.handlers import ReadChunk, Refusal, TransactionView, dispatch
from postier.smtp.server.settings import EngineSettings
from postier.smtp.server.state import OUT_OF_SEQUENCE, Effect, Mode, Phase, phase_after, step_for
from postier.smtp.server.txn import Transaction

__all__ = ["AUTH_LINE_MAX", "ServerConnection"]

AUTH_LINE_MAX = 12288  # RFC 4954 §4: AUTH lines may be this long, CRLF included


class ServerConnection:
    """One SMTP server session, without I/O. See the module docstring for the protocol.

    The handlers in ``handlers`` read its session state through its read-only properties (it is their
    ``CommandContext``) and answer with values: an event, a ``Refusal`` or a ``ReadChunk``.
    """

    def __init__(self, settings: EngineSettings) -> None:
        if settings.lmtp:
            raise NotImplementedError("LMTP (RFC 2033) is not implemented by the server engine yet")
        self.settings = settings
        self._buf = bytearray()
        self._phase = Phase.CONNECTED
        self._mode = Mode.LINE
        self._is_tls = settings.is_tls
        self._is_authenticated = False
        self._is_esmtp = False  # EHLO (not HELO) accepted
        self._helo_name: str | None = None
        self._txn: Transaction | None = None
        self._pending: Event | None = None
        self._counts_as_error = False
        self._errors = 0
        self._forced: Rejected | None = None  # an event the engine raises on its own (early talker, 421)
        self._reader: DataReader | ChunkReader | None = None
        self._skip_line = False  # discarding the rest of an overlong command line
        self._mechanisms = tuple(m.upper() for m in settings.auth_mechanisms)
        self._chunk_last = False
        self._small_chunks = 0  # small BDAT chunks of the session's ended transactions

    # --- properties --------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """QUIT or a 421 was sent (or the peer closed): the driver closes the connection."""
        return self._mode is Mode.CLOSED

    @property
    def is_tls(self) -> bool:
        return self._is_tls

    @property
    def is_authenticated(self) -> bool:
        return self._is_authenticated

    @property
    def is_reading_data(self) -> bool:
        """True between 354 and the end of data, or inside a BDAT chunk (the driver's data timeout)."""
        return self._mode in (Mode.DATA, Mode.CHUNK)

    @property
    def errors(self) -> int:
        """Errors counted so far (towards ``max_errors``)."""
        return self._errors

    @property
    def is_in_message(self) -> bool:
        """From the 354 (or the first BDAT) to the end of the message: the driver's data deadline."""
        txn = self._txn
        return self._mode is Mode.DATA or (txn is not None and (txn.used_bdat or self._mode is Mode.CHUNK))

    @property
    def memory_octets(self) -> int:
        """Octets of client input this engine holds now: unread input, the framing's buffer and the
        message held in memory (the driver charges them to the server's memory budget)."""
        reader, txn = self._reader, self._txn
        held = len(self._buf) + (reader.memory_octets if reader is not None else 0)
        return held + (txn.sink.memory_octets if txn is not None and txn.sink is not None else 0)

    def spool_message(self) -> None:
        """Keep no more of the current message in memory: hand it all out as ``MessageData``."""
        if self._txn is not None and self._txn.sink is not None:
            self._txn.sink.spool()

    @property
    def helo_name(self) -> str | None:
        """The name the client gave in its accepted HELO/EHLO."""
        return self._helo_name

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def is_esmtp(self) -> bool:
        """The accepted hello was EHLO (not HELO)."""
        return self._is_esmtp

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms the engine knows, upper case (offered in EHLO under the TLS rule)."""
        return self._mechanisms

    @property
    def transaction(self) -> TransactionView | None:
        """The open transaction (read-only), or None."""
        return self._txn

    # --- input -------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means the peer closed (the engine then yields nothing more)."""
        if not data:
            self._mode = Mode.CLOSED
            return
        if self._mode in (Mode.CLOSED, Mode.TLS):
            return  # RFC 3207 §4.2 / CVE-2011-0411: plaintext after STARTTLS is dropped
        if self._phase is Phase.CONNECTED:
            if self._forced is None:
                self._forced = Rejected(S.EARLY_TALKER, command="", close=True)
            return
        reader = self._reader
        if reader is not None and not reader.is_done and not self._buf and self._pending is None:
            rest = reader.feed(data)  # straight in: memory stays bounded while discarding
            if rest:
                self._buf += rest
            return
        self._buf += data

    def next_event(self) -> Event | MessageData | NeedData:
        """The next event, or NEED_DATA when more bytes (or the answer to the last event) are needed.
        ``MessageData`` is not answered (see its docstring)."""
        if self._pending is not None or self._mode in (Mode.CLOSED, Mode.TLS):
            return NEED_DATA
        if self._phase is Phase.CONNECTED:
            return NEED_DATA  # the greeting comes first
        event: Event | MessageData | NeedData
        self._counts_as_error = False
        if self._forced is not None:
            event, self._forced = self._forced, None
        elif self._reader is not None:
            event = self._read_message()
        else:
            event = self._read_line()
        if not isinstance(event, NeedData | MessageData):
            self._pending = event
        return event

    # --- output ------------------------------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """The wire bytes of ``reply``, which answers the greeting or the pending event."""
        data = reply.to_bytes()
        if reply.code == 421:
            self._close()
            return data
        if self._phase is Phase.CONNECTED:
            self._phase = Phase.REFUSED if reply.code == 554 else Phase.GREETED
            return data
        event = self._pending
        if event is None:
            raise RuntimeError("send() without an event to answer (only a 421 may be sent unasked)")
        self._pending = None
        self._on_reply(event, reply)
        return data

    def _on_reply(self, event: Event, reply: Reply) -> None:
        step = step_for(event, reply)
        self._phase = phase_after(step, self._phase)
        if step.mode is not None:
            self._mode = step.mode
        if step.effect is not Effect.NONE:
            self._apply(step.effect, event)

    def _apply(self, effect: Effect, event: Event) -> None:
        """The engine's bookkeeping for one answer (``state.Effect``)."""
        if effect is Effect.HELLO:
            assert isinstance(event, Hello)
            self._drop_transaction()
            self._helo_name = event.name
            self._is_esmtp = event.verb == "EHLO"
        elif effect is Effect.OPEN_TRANSACTION:
            assert isinstance(event, MailFrom)
            self._txn = Transaction(event.sender, event.params)
        elif effect is Effect.ADD_RECIPIENT:
            assert isinstance(event, RcptTo)
            if self._txn is not None:
                self._txn.recipients.append(event.recipient)
        elif effect is Effect.DROP_TRANSACTION:
            self._drop_transaction()
        elif effect is Effect.READ_DATA:
            s, txn = self.settings, self._txn
            sink = txn.open_sink(s) if txn is not None else None
            self._reader = DataReader(
                max_message_bytes=s.max_message_bytes, max_text_line=s.max_text_line, sink=sink
            )
        elif effect is Effect.START_TLS:
            self._buf.clear()  # RFC 3207 §4.2: nothing pipelined after STARTTLS survives
        elif effect is Effect.AUTHENTICATED:
            self._is_authenticated = True
        elif effect is Effect.REJECTED:
            assert isinstance(event, Rejected)
            self._on_rejected(event)
        elif effect is Effect.CLOSE:
            self._close()

    def _on_rejected(self, event: Rejected) -> None:
        if event.close:
            self._close()
            return
        if self._counts_as_error and event.reply.code >= 500:
            self._errors += 1
            if self._errors >= self.settings.max_errors:
                self._forced = Rejected(S.TOO_MANY_ERRORS, command=event.command, close=True)

    def _close(self) -> None:
        self._mode = Mode.CLOSED
        self._buf.clear()
        self._reader = None
        self._pending = None

    def tls_established(self) -> None:
        """After the driver's TLS handshake: back to the just-greeted state (RFC 3207 §4.2)."""
        self._is_tls = True
        self._mode = Mode.LINE
        self._phase = Phase.GREETED
        self._buf.clear()
        self._txn = None
        self._helo_name = None
        self._is_esmtp = False
        self._is_authenticated = False

    def ehlo_reply(self, hostname: str | None = None) -> Reply:
        """The multi-line 250 EHLO reply for the current state (``ehlo.py``)."""
        name = hostname or self.settings.hostname
        return ehlo_reply(self.settings, name, is_tls=self._is_tls, mechanisms=self._mechanisms)

    # --- reading -----------------------------------------------------------------------------------

    def _reject(self, reply: Reply, command: str, *, counts: bool = True) -> Rejected:
        self._counts_as_error = counts
        return Rejected(reply, command=command)

    def _read_line(self) -> Event | MessageData | NeedData:
        buf = self._buf
        newline = buf.find(b"\n")
        if self._skip_line:
            if newline == -1:
                buf.clear()
                return NEED_DATA
            del buf[: newline + 1]
            self._skip_line = False
            return self._reject(S.LINE_TOO_LONG, "")
        auth_ish = self._mode is Mode.AUTH or buf[:5].upper() == b"AUTH "
        limit = AUTH_LINE_MAX if auth_ish else self.settings.max_command_line
        if newline == -1:
            if len(buf) > limit:  # RFC 5321 §4.5.3.1.4: refuse, and drop the rest of the line
                self._skip_line = True
                buf.clear()
            return NEED_DATA
        line = bytes(buf[: newline + 1])
        del buf[: newline + 1]
        if len(line) > limit:
            return self._line_error(S.LINE_TOO_LONG)
        if line[-2:-1] != b"\r" or b"\r" in line[:-2]:  # RFC 5321 §2.3.8: only CRLF ends a line
            return self._line_error(S.BARE_LINE_ENDING)
        if self._mode is Mode.AUTH:
            return self._auth_line(line[:-2])
        return self._command(line[:-2])

    def _command(self, line: bytes) -> Event | MessageData | NeedData:
        outcome = dispatch(self, line)
        if isinstance(outcome, Refusal):
            return self._reject(outcome.reply, outcome.command, counts=outcome.counts)
        if isinstance(outcome, ReadChunk):
            return self._read_chunk(outcome.size, last=outcome.last)
        return outcome

    def _line_error(self, reply: Reply) -> Rejected:
        command = "AUTH" if self._mode is Mode.AUTH else ""
        self._mode = Mode.LINE  # a broken AUTH response ends the exchange
        return self._reject(reply, command)

    def _auth_line(self, line: bytes) -> Event:
        self._mode = Mode.LINE  # until the driver's 334 reopens the exchange
        if line == b"*":
            return AuthCancelled(S.AUTH_CANCELLED)
        if not line.isascii():
            return self._reject(S.AUTH_MALFORMED, "AUTH")
        self._mode = Mode.AUTH
        return AuthResponse(line.decode("ascii"))

    def _read_message(self) -> Event | MessageData | NeedData:
        reader = self._reader
        assert reader is not None
        if self._buf and not reader.is_done:
            rest = reader.feed(self._buf)
            self._buf = bytearray(rest or b"")
        sink = reader.sink
        if sink is not None and sink.has_output:
            return MessageData(sink.take())
        if not reader.is_done:
            return NEED_DATA
        self._reader = None
        self._mode = Mode.LINE
        if isinstance(reader, DataReader):
            return self._data_done(reader)
        return self._chunk_done(reader)

    def _data_done(self, reader: DataReader) -> Event:
        txn = self._txn
        self._end_transaction()  # RFC 5321 §4.1.1.4: the data ends the transaction, whatever the reply
        error = reader.error or reader.sink.error
        if error is not None or txn is None:
            return self._reject(error or S.BAD_SEQUENCE, "DATA")
        return txn.message(reader.sink)

    def _read_chunk(self, size: int, *, last: bool) -> Event | MessageData | NeedData:
        """Start reading a BDAT chunk of ``size`` octets (kept only if it may join the transaction)."""
        txn = self._txn
        keep = (
            txn is not None
            and self._phase is Phase.RCPT
            and txn.failed is None
            and txn.chunk_bytes + size <= self.settings.max_message_bytes
        )
        sink = txn.open_sink(self.settings) if keep and txn is not None else None
        self._reader = ChunkReader(size, sink=sink)
        self._mode = Mode.CHUNK
        self._chunk_last = last
        return self._read_message()

    def _chunk_done(self, reader: ChunkReader) -> Event:
        last, txn = self._chunk_last, self._txn
        refusal = OUT_OF_SEQUENCE["BDAT"].get(self._phase)
        if txn is None or refusal is not None:
            if last and txn is not None:
                self._end_transaction()
            return self._reject(refusal or S.BAD_SEQUENCE, "BDAT")
        txn.used_bdat = True
        # Chunks pipelined after a failed one repeat its reply, and do not count as errors, unless
        # the client floods small chunks: those count, so max_errors ends the session.
        counts = txn.failed is None or txn.failed is S.TOO_MANY_CHUNKS
        if txn.failed is None:
            txn.failed = txn.chunk_refusal(reader, self.settings, last=last, small_before=self._small_chunks)
            if txn.failed is not None and txn.sink is not None:
                txn.sink.fail(txn.failed)
        if txn.failed is not None:
            if last:
                self._end_transaction()
            return self._reject(txn.failed, "BDAT", counts=counts)
        txn.chunk_bytes += reader.size
        if not last:
            return ChunkReceived(S.OK.with_text(f"{reader.size} octets received"), octets=reader.size)
        self._end_transaction()
        return txn.message(txn.open_sink(self.settings))

    def _drop_transaction(self) -> None:
        if self._txn is not None:
            self._small_chunks += self._txn.small_chunks
        self._txn = None

    def _end_transaction(self) -> None:
        self._drop_transaction()
        if self._phase in (Phase.MAIL, Phase.RCPT):
            self._phase = Phase.HELLO
