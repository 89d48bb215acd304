"""The server engine's state table: where a session stands, what the next bytes mean, and what answering
an event does.

Two dimensions, kept apart on purpose:

- ``Phase`` — how far the dialogue has got (RFC 5321 §4.1.4): greeted, said hello, has a sender, has a
  recipient. It changes only when the driver *answers* (``ServerConnection.send``): a 250 to MAIL opens
  the transaction, a 2xx to RCPT moves it to ``RCPT``, RSET and EHLO go back to ``HELLO``.
- ``Mode`` — what the next received bytes mean: command lines, message data after 354, a BDAT chunk,
  AUTH responses after 334, or nothing at all while TLS is being negotiated.

``TRANSITIONS`` is the one table of what an answer does: ``(event type, reply class) → Step`` — the new
phase, the new mode and the engine's own bookkeeping (``Effect``: its transaction, HELO name, TLS and
AUTH state). A pair not in the table changes nothing. ``step_for`` looks a pair up.

``OUT_OF_SEQUENCE`` says, per verb, which phases refuse it and with which 503/554 reply; a phase not
listed accepts the verb (its own checks — syntax, limits, TLS, AUTH — come after).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.smtp.server.events import (
    AuthResponse,
    AuthStart,
    DataStart,
    Event,
    Hello,
    MailFrom,
    MessageReceived,
    Quit,
    RcptTo,
    Rejected,
    Reset,
    StartTls,
)

__all__ = ["OUT_OF_SEQUENCE", "TRANSITIONS", "Effect", "Mode", "Phase", "Step", "phase_after", "step_for"]


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


class Effect(Enum):
    """The engine's bookkeeping when an answer is sent, besides phase and mode."""

    NONE = auto()
    HELLO = auto()  # remember the HELO name and whether it was EHLO; drop any transaction
    OPEN_TRANSACTION = auto()  # a new transaction with the MAIL FROM's sender and parameters
    ADD_RECIPIENT = auto()  # the RCPT's recipient joins the transaction
    DROP_TRANSACTION = auto()  # RSET: the transaction is gone
    READ_DATA = auto()  # a DATA reader for the message after 354
    START_TLS = auto()  # drop what was pipelined after STARTTLS (RFC 3207 §4.2)
    AUTHENTICATED = auto()  # the AUTH exchange succeeded
    REJECTED = auto()  # count the error (5xx), close after a closing refusal or too many errors
    CLOSE = auto()  # nothing more is read or answered


@dataclass(frozen=True, slots=True)
class Step:
    """What answering one event with a reply of one class does. ``None``: unchanged."""

    phase: Phase | None = None
    mode: Mode | None = None
    effect: Effect = Effect.NONE
    ends_transaction: bool = False  # from MAIL or RCPT back to HELLO (other phases unchanged)


_ANY = (2, 3, 4, 5)
_AUTH = {3: Step(mode=Mode.AUTH), 2: Step(mode=Mode.LINE, effect=Effect.AUTHENTICATED)}
_AUTH |= {4: Step(mode=Mode.LINE), 5: Step(mode=Mode.LINE)}  # a refusal ends the exchange

# RFC 5321 §4.1.4 (EHLO/HELO and RSET reset the transaction), §4.1.1.4 (the data ends it, whatever
# the reply); RFC 3207 §4.2 (STARTTLS); RFC 4954 §4 (334 goes on, 235 or a refusal ends AUTH).
TRANSITIONS: dict[tuple[type[Event], int], Step] = {
    (Hello, 2): Step(Phase.HELLO, effect=Effect.HELLO),
    (MailFrom, 2): Step(Phase.MAIL, effect=Effect.OPEN_TRANSACTION),
    (RcptTo, 2): Step(Phase.RCPT, effect=Effect.ADD_RECIPIENT),
    (DataStart, 3): Step(mode=Mode.DATA, effect=Effect.READ_DATA),
    (StartTls, 2): Step(mode=Mode.TLS, effect=Effect.START_TLS),
    **{(MessageReceived, c): Step(ends_transaction=True) for c in _ANY},
    **{(Reset, c): Step(effect=Effect.DROP_TRANSACTION, ends_transaction=True) for c in _ANY},
    **{(Quit, c): Step(mode=Mode.CLOSED, effect=Effect.CLOSE) for c in _ANY},
    **{(Rejected, c): Step(effect=Effect.REJECTED) for c in _ANY},
    **{(AuthStart, c): step for c, step in _AUTH.items()},
    **{(AuthResponse, c): step for c, step in _AUTH.items()},
}

_UNCHANGED = Step()


def step_for(event: Event, reply: Reply) -> Step:
    """What answering ``event`` with ``reply`` does (``TRANSITIONS``; anything else: nothing)."""
    return TRANSITIONS.get((type(event), reply.code // 100), _UNCHANGED)


def phase_after(step: Step, phase: Phase) -> Phase:
    """The phase once an answer with this ``step`` is sent in ``phase``."""
    if step.phase is not None:
        return step.phase
    if step.ends_transaction and phase in (Phase.MAIL, Phase.RCPT):
        return Phase.HELLO
    return phase
