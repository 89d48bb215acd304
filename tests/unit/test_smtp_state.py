"""The server engine's state table (``state.TRANSITIONS``) and its command handlers, read through a fake
``CommandContext``: what an answer does, and what a command line means, without a ``ServerConnection``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.smtp.grammar import MailParams
from postier.smtp.server.events import (
    AuthResponse,
    AuthStart,
    DataStart,
    Event,
    Hello,
    MailFrom,
    MessageReceived,
    Noop,
    Quit,
    RcptTo,
    Rejected,
    Reset,
    StartTls,
)
from postier.smtp.server.handlers import ReadChunk, Refusal, dispatch
from postier.smtp.server.settings import EngineSettings
from postier.smtp.server.state import TRANSITIONS, Effect, Mode, Phase, phase_after, step_for

P = Phase
RCPT = Recipient(Address("bob", "example.test"))
MAIL = MailFrom(Address("alice", "example.test"), MailParams())


# (event, reply, phase before) -> (phase after, mode after or None, effect)
CASES: list[tuple[Event, Reply, Phase, Phase, Mode | None, Effect]] = [
    (Hello("EHLO", "c"), S.OK, P.GREETED, P.HELLO, None, Effect.HELLO),
    (Hello("EHLO", "c"), S.OK, P.RCPT, P.HELLO, None, Effect.HELLO),  # EHLO resets the transaction
    (Hello("HELO", "c"), Reply(550, None, "no"), P.GREETED, P.GREETED, None, Effect.NONE),
    (MAIL, S.SENDER_OK, P.HELLO, P.MAIL, None, Effect.OPEN_TRANSACTION),
    (MAIL, Reply(451, None, "later"), P.HELLO, P.HELLO, None, Effect.NONE),
    (RcptTo(RCPT), S.RECIPIENT_OK, P.MAIL, P.RCPT, None, Effect.ADD_RECIPIENT),
    (RcptTo(RCPT), Reply(550, None, "no"), P.MAIL, P.MAIL, None, Effect.NONE),
    (DataStart(), S.START_DATA, P.RCPT, P.RCPT, Mode.DATA, Effect.READ_DATA),
    (DataStart(), Reply(451, None, "later"), P.RCPT, P.RCPT, None, Effect.NONE),
    (MessageReceived(b""), Reply(250, None, "ok"), P.RCPT, P.HELLO, None, Effect.NONE),
    (MessageReceived(b""), Reply(554, None, "no"), P.RCPT, P.HELLO, None, Effect.NONE),
    (Reset(S.RESET_OK), S.RESET_OK, P.RCPT, P.HELLO, None, Effect.DROP_TRANSACTION),
    (Reset(S.RESET_OK), S.RESET_OK, P.GREETED, P.GREETED, None, Effect.DROP_TRANSACTION),  # no HELO yet
    (Quit(S.BYE), S.BYE, P.HELLO, P.HELLO, Mode.CLOSED, Effect.CLOSE),
    (StartTls(), S.TLS_READY, P.HELLO, P.HELLO, Mode.TLS, Effect.START_TLS),
    (StartTls(), Reply(454, None, "no TLS"), P.HELLO, P.HELLO, None, Effect.NONE),
    (AuthStart("PLAIN", None), Reply(334, None, ""), P.HELLO, P.HELLO, Mode.AUTH, Effect.NONE),
    (AuthResponse("x"), S.AUTH_OK, P.HELLO, P.HELLO, Mode.LINE, Effect.AUTHENTICATED),
    (AuthResponse("x"), Reply(535, None, "no"), P.HELLO, P.HELLO, Mode.LINE, Effect.NONE),
    (Rejected(S.SYNTAX_ERROR), S.SYNTAX_ERROR, P.MAIL, P.MAIL, None, Effect.REJECTED),
    (Noop(S.NOOP_OK), S.NOOP_OK, P.RCPT, P.RCPT, None, Effect.NONE),  # not in the table: nothing
]


@pytest.mark.parametrize(("event", "reply", "before", "after", "mode", "effect"), CASES)
def test_transition(
    event: Event, reply: Reply, before: Phase, after: Phase, mode: Mode | None, effect: Effect
) -> None:
    step = step_for(event, reply)
    assert (phase_after(step, before), step.mode, step.effect) == (after, mode, effect)


def test_every_entry_is_a_reply_class() -> None:
    assert {reply_class for _, reply_class in TRANSITIONS} <= {2, 3, 4, 5}


@dataclass
class FakeTransaction:
    params: MailParams = MailParams()
    recipients: Sequence[Recipient] = ()
    used_bdat: bool = False


@dataclass
class FakeContext:
    """A ``CommandContext`` that is not a ``ServerConnection``: the handlers need nothing more."""

    settings: EngineSettings = field(default_factory=EngineSettings)
    phase: Phase = Phase.HELLO
    is_tls: bool = False
    is_esmtp: bool = True
    is_authenticated: bool = False
    auth_mechanisms: tuple[str, ...] = ()
    transaction: FakeTransaction | None = None


def test_dispatch_returns_values() -> None:
    assert dispatch(FakeContext(), b"MAIL FROM:<a@b.test>") == MailFrom(Address("a", "b.test"), MailParams())
    assert dispatch(FakeContext(), b"FROB") == Refusal(S.UNKNOWN_COMMAND, "FROB")
    assert dispatch(FakeContext(), b"RCPT TO:<b@c.test>") == Refusal(S.MAIL_FIRST, "RCPT")
    assert dispatch(FakeContext(phase=Phase.REFUSED), b"NOOP") == Refusal(S.SESSION_REFUSED, "NOOP")


def test_too_many_recipients_does_not_count() -> None:
    full = FakeTransaction(recipients=(RCPT,))
    ctx = FakeContext(phase=Phase.RCPT, settings=EngineSettings(max_recipients=1), transaction=full)
    assert dispatch(ctx, b"RCPT TO:<c@d.test>") == Refusal(S.TOO_MANY_RECIPIENTS, "RCPT", counts=False)


def test_bdat_asks_for_its_chunk_first_whatever_the_phase() -> None:
    assert dispatch(FakeContext(phase=Phase.GREETED), b"BDAT 10 LAST") == ReadChunk(10, last=True)
    assert dispatch(FakeContext(), b"BDAT x") == Refusal(S.SYNTAX_ERROR, "BDAT")


def test_auth_reads_the_context() -> None:
    ctx = FakeContext(is_tls=True, auth_mechanisms=("PLAIN",))
    assert dispatch(ctx, b"AUTH PLAIN") == AuthStart("PLAIN", None)
    in_txn = FakeContext(is_tls=True, auth_mechanisms=("PLAIN",), transaction=FakeTransaction())
    assert dispatch(in_txn, b"AUTH PLAIN") == Refusal(S.IN_TRANSACTION, "AUTH")
    helo = FakeContext(is_tls=True, is_esmtp=False, auth_mechanisms=("PLAIN",))
    assert dispatch(helo, b"AUTH PLAIN") == Refusal(S.AUTH_NEEDS_EHLO, "AUTH")
