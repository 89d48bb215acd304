"""Events the server engine yields (``ServerConnection.next_event``).

The driver answers every event with exactly one ``ServerConnection.send(reply)``, in order. Events that
the engine can answer alone are ``Answered`` subclasses: the driver sends ``event.reply`` (it may log
them first). All other events are decisions for the driver and its policy: it picks the reply.

``NEED_DATA`` (from ``postier.smtp.need_data``) and ``MailParams`` (from ``postier.smtp.grammar``) are
re-exported here, as part of the engine's contract.

AUTH is the one exchange of several steps: after ``AuthStart`` the driver may send ``334`` challenges;
each client line in between arrives as ``AuthResponse``; a ``235`` or a 4xx/5xx reply ends the exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.mail.reply import Reply
from postier.smtp.grammar import MailParams
from postier.smtp.need_data import NEED_DATA

__all__ = [
    "NEED_DATA",
    "Answered",
    "AuthCancelled",
    "AuthResponse",
    "AuthStart",
    "ChunkReceived",
    "DataStart",
    "Event",
    "Hello",
    "MailFrom",
    "MailParams",
    "MessageData",
    "MessageReceived",
    "Noop",
    "Quit",
    "RcptTo",
    "Rejected",
    "Reset",
    "StartTls",
]


# --- decisions for the driver ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """EHLO, HELO (or LHLO in LMTP). Positive answer: ``conn.ehlo_reply(hostname)`` for EHLO/LHLO,
    ``Reply(250, None, hostname)`` for HELO."""

    verb: str
    name: str
    is_well_formed: bool = True  # the name is a domain or address literal (RFC 5321 §4.1.1.1); the
    # engine accepts odd but printable names (many clients send bare hostnames): worth a log line only


@dataclass(frozen=True, slots=True)
class MailFrom:
    """A syntactically valid MAIL FROM in the right state. ``sender`` None is ``<>``."""

    sender: Address | None
    params: MailParams


@dataclass(frozen=True, slots=True)
class RcptTo:
    """A syntactically valid RCPT TO (with its NOTIFY/ORCPT) in the right state."""

    recipient: Recipient


@dataclass(frozen=True, slots=True)
class DataStart:
    """DATA with at least one accepted recipient. Answer 354 (``S.START_DATA``) to read the data."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """The whole message: after ``<CRLF>.<CRLF>`` (dot-unstuffed) or after BDAT LAST. ``body`` is the
    message exactly as the client meant it — or, when ``spooled_octets`` is not 0, its last part only:
    the first ``spooled_octets`` came before in ``MessageData`` events. The driver prepends the
    Received header and queues it.
    ``sender``, ``params`` and ``recipients`` are the transaction: the recipients are only those the
    driver accepted (a 2xx reply to their ``RcptTo``), in order. The transaction ends with this event,
    whatever the reply."""

    body: bytes
    sender: Address | None = None
    params: MailParams = MailParams()
    recipients: tuple[Recipient, ...] = ()
    spooled_octets: int = 0

    @property
    def size(self) -> int:
        return self.spooled_octets + len(self.body)


@dataclass(frozen=True, slots=True)
class MessageData:
    """Message octets the engine does not keep in memory (``EngineSettings.hold_message_octets``, or
    ``ServerConnection.spool_message``): the driver writes ``parts``, in order, to the message's spool.
    **Not answered**: this is the one event the driver does not ``send`` a reply to. The data may
    still be refused at its end (a ``Rejected`` for DATA or BDAT, or a later chunk failing): the
    driver then drops its spool, as it does when the transaction ends any other way."""

    parts: tuple[bytes | bytearray, ...]

    @property
    def octets(self) -> int:
        return sum(len(part) for part in self.parts)


@dataclass(frozen=True, slots=True)
class StartTls:
    """STARTTLS, allowed now. Answer ``S.TLS_READY``; the engine then discards anything the client
    pipelined after the command. After the handshake the driver calls ``conn.tls_established()``."""


@dataclass(frozen=True, slots=True)
class AuthStart:
    """AUTH with a mechanism the engine offers. ``initial_response`` is the raw base64 text of the
    initial response (``"="`` means an empty one, RFC 4954 §4), or None when absent."""

    mechanism: str
    initial_response: str | None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A client line during an AUTH exchange (base64 text; ``*`` cancels and is answered by the engine)."""

    data: str


# --- answered by the engine -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    """An event the engine has answered; the driver sends ``reply``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Noop(Answered):
    """NOOP, HELP or VRFY (VRFY gets 252: Postier never confirms users)."""


@dataclass(frozen=True, slots=True)
class ChunkReceived(Answered):
    """A BDAT chunk that is not the LAST one, read and kept (RFC 3030 §2): ``250 2.0.0 n octets received``."""

    octets: int = 0


@dataclass(frozen=True, slots=True)
class AuthCancelled(Answered):
    """The client sent ``*`` during an AUTH exchange (RFC 4954 §4): 501 5.7.0, the exchange is over."""


@dataclass(frozen=True, slots=True)
class Reset(Answered):
    """RSET: the transaction is gone."""


@dataclass(frozen=True, slots=True)
class Quit(Answered):
    """QUIT: send the 221 and close."""


@dataclass(frozen=True, slots=True)
class Rejected(Answered):
    """Bad input the engine refused: syntax, sequence, size, smuggling. ``close`` means the engine is
    done (421 after too many errors, early talker): send the reply, then close the connection.
    ``command`` is the command verb (or "DATA"/"BDAT" for message data) for the log."""

    command: str = ""
    close: bool = False


Event = (
    Hello
    | MailFrom
    | RcptTo
    | DataStart
    | MessageReceived
    | StartTls
    | AuthStart
    | AuthResponse
    | Noop
    | Reset
    | Quit
    | Rejected
    | ChunkReceived
    | AuthCancelled
)
