"""The server engine's state table: where a session stands, and which commands are out of sequence.

Two dimensions, kept apart on purpose:

- ``Phase`` — how far the dialogue has got (RFC 5321 §4.1.4): greeted, said hello, has a sender, has a
  recipient. It changes only when the driver *answers* (``ServerConnection.send``): a 250 to MAIL opens
  the transaction, a 2xx to RCPT moves it to ``RCPT``, RSET and EHLO go back to ``HELLO``.
- ``Mode`` — what the next received bytes mean: command lines, message data after 354, a BDAT chunk,
  AUTH responses after 334, or nothing at all while TLS is being negotiated.

``OUT_OF_SEQUENCE`` says, per verb, which phases refuse it and with which 503/554 reply; a phase not
listed accepts the verb (its own checks — syntax, limits, TLS, AUTH — come after).
"""

from __future__ import annotations

from enum import Enum, auto

from postier.mail.replies import S
from postier.mail.reply import Reply

__all__ = ["OUT_OF_SEQUENCE", "Mode", "Phase", "phase_after"]


class Phase(Enum):
    CONNECTED = auto()  # the greeting is not sent yet
    REFUSED = auto()  # greeted with 554: only QUIT, everything else 503 (RFC 5321 §3.1)
    GREETED = auto()  # 220 sent, no HELO/EHLO yet (or again, after STARTTLS)
    HELLO = auto()  # HELO/EHLO accepted, no transaction
    MAIL = auto()  # a sender accepted, no recipient yet
    RCPT = auto()  # at least one recipient accepted


class Mode(Enum):
    LINE = auto()  # command lines
    DATA = auto()  # after 354, until <CRLF>.<CRLF>
    CHUNK = auto()  # the octets of one BDAT chunk
    AUTH = auto()  # AUTH responses, after a 334
    TLS = auto()  # after 220 to STARTTLS, until tls_established(): received bytes are dropped
    CLOSED = auto()  # after QUIT or a 421: nothing more is read


_P = Phase
_BEFORE_HELLO = {_P.GREETED: S.HELLO_FIRST}
# AUTH checks its sequence itself, after "is AUTH offered at all" (RFC 4954 §4 order).
_IN_TRANSACTION = {_P.MAIL: S.IN_TRANSACTION, _P.RCPT: S.IN_TRANSACTION}

# RFC 5321 §4.1.4 and §3.3 (DATA with no accepted recipient: 554 "no valid recipients").
OUT_OF_SEQUENCE: dict[str, dict[Phase, Reply]] = {
    "MAIL": {**_BEFORE_HELLO, _P.MAIL: S.NESTED_MAIL, _P.RCPT: S.NESTED_MAIL},
    "RCPT": {_P.GREETED: S.MAIL_FIRST, _P.HELLO: S.MAIL_FIRST},
    "DATA": {_P.GREETED: S.BAD_SEQUENCE, _P.HELLO: S.BAD_SEQUENCE, _P.MAIL: S.NO_VALID_RECIPIENTS},
    "BDAT": {_P.GREETED: S.BAD_SEQUENCE, _P.HELLO: S.BAD_SEQUENCE, _P.MAIL: S.NO_VALID_RECIPIENTS},
    "STARTTLS": _IN_TRANSACTION,  # RFC 3207 §4: not in the middle of a transaction
}


def phase_after(kind: str, reply: Reply, phase: Phase) -> Phase:
    """The phase once ``reply`` answers an event of ``kind`` (the event's class name)."""
    positive = reply.code < 300
    if kind == "Hello" and positive:
        return Phase.HELLO  # RFC 5321 §4.1.4: EHLO/HELO also reset the transaction
    if kind == "MailFrom" and positive:
        return Phase.MAIL
    if kind == "RcptTo" and positive:
        return Phase.RCPT
    if kind in ("Reset", "MessageReceived") and phase in (Phase.MAIL, Phase.RCPT):
        return Phase.HELLO
    return phase
