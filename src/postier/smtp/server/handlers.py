"""The server engine's command table: from a command line to its event, one handler per verb.

Kept apart from ``connection`` so the engine reads as the reading and answering of the dialogue and this
as what each command means. Unlike the pure functions of ``commands`` (argument and a few flags in, event
out), these handlers read the session they run in — through ``CommandContext``, the read-only part of
``CommandContext`` they need (its phase, transaction, TLS and AUTH state, settings) — but never change
it: they return values. A handler returns the event, raises ``RemoteProtocolError`` with the refusal
(which counts towards ``max_errors``), returns a ``Refusal`` when the refusal must not count, or a
``ReadChunk`` for BDAT, whose chunk the engine reads before any reply (RFC 3030 §2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from postier.mail.envelope import Recipient
from postier.mail.errors import RemoteProtocolError
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.smtp import grammar
from postier.smtp.grammar import MailParams
from postier.smtp.server import commands
from postier.smtp.server.events import Event, Hello, MailFrom, RcptTo
from postier.smtp.server.settings import EngineSettings
from postier.smtp.server.state import OUT_OF_SEQUENCE, Phase

__all__ = ["CommandContext", "Outcome", "ReadChunk", "Refusal", "TransactionView", "dispatch"]


class TransactionView(Protocol):
    """What the handlers read of the open transaction."""

    @property
    def params(self) -> MailParams: ...
    @property
    def recipients(self) -> Sequence[Recipient]: ...
    @property
    def used_bdat(self) -> bool: ...


class CommandContext(Protocol):
    """What the handlers read of the session (``CommandContext`` provides it)."""

    @property
    def settings(self) -> EngineSettings: ...
    @property
    def phase(self) -> Phase: ...
    @property
    def is_tls(self) -> bool: ...
    @property
    def is_esmtp(self) -> bool: ...
    @property
    def is_authenticated(self) -> bool: ...
    @property
    def auth_mechanisms(self) -> tuple[str, ...]: ...
    @property
    def transaction(self) -> TransactionView | None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """The command is refused with ``reply``; ``counts``: towards ``max_errors`` (5xx only)."""

    reply: Reply
    command: str
    counts: bool = True


@dataclass(frozen=True, slots=True)
class ReadChunk:
    """BDAT: read a chunk of ``size`` octets first; the event comes once it is read."""

    size: int
    last: bool


Outcome = Event | Refusal | ReadChunk
_Handler = Callable[[CommandContext, bytes], Event | Refusal | ReadChunk]


def dispatch(conn: CommandContext, line: bytes) -> Outcome:
    """The event for one command line (CRLF removed): refusals by phase, then the verb's handler."""
    verb, arg = grammar.split_command(line)
    if conn.phase is Phase.REFUSED and verb != "QUIT":
        return Refusal(S.SESSION_REFUSED, verb)
    handler = _HANDLERS.get(verb)
    if handler is None:
        return Refusal(S.UNKNOWN_COMMAND, verb)
    out_of_sequence = OUT_OF_SEQUENCE.get(verb, {}).get(conn.phase)
    if out_of_sequence is not None and verb != "BDAT":  # BDAT reads its chunk first
        return Refusal(out_of_sequence, verb)
    try:
        return handler(conn, arg)
    except RemoteProtocolError as exc:
        return Refusal(exc.reply, verb)


def _ehlo(conn: CommandContext, arg: bytes) -> Event:
    name, well_formed = grammar.parse_hello(arg)
    return Hello("EHLO", name, is_well_formed=well_formed)


def _helo(conn: CommandContext, arg: bytes) -> Event:
    name, well_formed = grammar.parse_hello(arg)
    return Hello("HELO", name, is_well_formed=well_formed)


def _mail(conn: CommandContext, arg: bytes) -> Event:
    if conn.settings.mail_requires_auth and not conn.is_authenticated:
        raise RemoteProtocolError(S.AUTH_REQUIRED)  # RFC 4954 §6
    sender, params = grammar.parse_mail(arg, max_message_bytes=conn.settings.max_message_bytes)
    if params.requiretls and not conn.is_tls:  # RFC 8689 §4: offered, and valid, only under TLS
        raise RemoteProtocolError(S.REQUIRETLS_NEEDS_TLS)
    return MailFrom(sender, params)


def _rcpt(conn: CommandContext, arg: bytes) -> Event | Refusal:
    txn = conn.transaction
    assert txn is not None
    if len(txn.recipients) >= conn.settings.max_recipients:  # RFC 5321 §4.5.3.1.10
        return Refusal(S.TOO_MANY_RECIPIENTS, "RCPT", counts=False)
    return RcptTo(grammar.parse_rcpt(arg, allow_utf8=txn.params.smtputf8))


def _data(conn: CommandContext, arg: bytes) -> Event:
    txn = conn.transaction
    assert txn is not None
    return commands.data_start(arg, used_bdat=txn.used_bdat, body=txn.params.body)


def _bdat(conn: CommandContext, arg: bytes) -> ReadChunk:
    """RFC 3030 §2: the chunk is read (kept or dropped) before any reply, whatever the state."""
    parsed = grammar.parse_bdat(arg)
    if parsed is None:
        raise RemoteProtocolError(S.SYNTAX_ERROR)  # the chunk size is unknown: nothing to skip
    size, last = parsed
    return ReadChunk(size, last)


def _starttls(conn: CommandContext, arg: bytes) -> Event:
    return commands.starttls(arg, is_tls=conn.is_tls, can_starttls=conn.settings.can_starttls)


def _auth(conn: CommandContext, arg: bytes) -> Event:
    return commands.auth_start(
        arg,
        mechanisms=conn.auth_mechanisms,
        is_esmtp=conn.is_esmtp,
        is_authenticated=conn.is_authenticated,
        in_transaction=conn.transaction is not None,
        tls_ok=conn.is_tls or not conn.settings.auth_requires_tls,
    )


def _expn(conn: CommandContext, arg: bytes) -> Refusal:
    return Refusal(S.NOT_IMPLEMENTED, "EXPN")  # lists are not expanded to strangers


_HANDLERS: dict[str, _Handler] = {
    "EHLO": _ehlo,
    "HELO": _helo,
    "MAIL": _mail,
    "RCPT": _rcpt,
    "DATA": _data,
    "BDAT": _bdat,
    "STARTTLS": _starttls,
    "AUTH": _auth,
    "EXPN": _expn,
}


def _simple(verb: str) -> Callable[[CommandContext, bytes], Event]:
    def handle(conn: CommandContext, arg: bytes) -> Event:
        return commands.simple(verb, arg)

    return handle


_HANDLERS.update((verb, _simple(verb)) for verb in commands.SIMPLE)
