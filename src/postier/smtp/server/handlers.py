"""The server engine's command table: from a command line to its event, one handler per verb.

Kept apart from ``connection`` so the engine reads as the reading and answering of the dialogue and this as
what each command means. Unlike the pure functions of ``commands`` (argument and a few flags in, event
out), these handlers read the session they run in (its phase, transaction, TLS and AUTH state, settings);
only BDAT changes it, by handing its chunk to the engine to read before any reply (RFC 3030 §2).
A handler returns the event, raises ``RemoteProtocolError`` with the refusal, or returns a ``Rejected``
itself when the refusal must not count towards ``max_errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from postier.mail.errors import RemoteProtocolError
from postier.mail.replies import S
from postier.smtp import grammar
from postier.smtp.need_data import NeedData
from postier.smtp.server import commands
from postier.smtp.server.events import Event, Hello, MailFrom, RcptTo
from postier.smtp.server.state import OUT_OF_SEQUENCE, Phase

if TYPE_CHECKING:
    from postier.smtp.server.connection import ServerConnection

__all__ = ["dispatch"]


def dispatch(conn: ServerConnection, line: bytes) -> Event | NeedData:
    """The event for one command line (CRLF removed): refusals by phase, then the verb's handler."""
    verb, arg = grammar.split_command(line)
    if conn.phase is Phase.REFUSED and verb != "QUIT":
        return conn._reject(S.SESSION_REFUSED, verb)
    handler = _HANDLERS.get(verb)
    if handler is None:
        return conn._reject(S.UNKNOWN_COMMAND, verb)
    out_of_sequence = OUT_OF_SEQUENCE.get(verb, {}).get(conn.phase)
    if out_of_sequence is not None and verb != "BDAT":  # BDAT reads its chunk first
        return conn._reject(out_of_sequence, verb)
    try:
        return handler(conn, arg)
    except RemoteProtocolError as exc:
        return conn._reject(exc.reply, verb)


def _ehlo(conn: ServerConnection, arg: bytes) -> Event:
    name, well_formed = grammar.parse_hello(arg)
    return Hello("EHLO", name, is_well_formed=well_formed)


def _helo(conn: ServerConnection, arg: bytes) -> Event:
    name, well_formed = grammar.parse_hello(arg)
    return Hello("HELO", name, is_well_formed=well_formed)


def _mail(conn: ServerConnection, arg: bytes) -> Event:
    if conn.settings.mail_requires_auth and not conn.is_authenticated:
        raise RemoteProtocolError(S.AUTH_REQUIRED)  # RFC 4954 §6
    sender, params = grammar.parse_mail(arg, max_message_bytes=conn.settings.max_message_bytes)
    return MailFrom(sender, params)


def _rcpt(conn: ServerConnection, arg: bytes) -> Event:
    txn = conn._txn
    assert txn is not None
    if len(txn.recipients) >= conn.settings.max_recipients:  # RFC 5321 §4.5.3.1.10
        return conn._reject(S.TOO_MANY_RECIPIENTS, "RCPT", counts=False)
    return RcptTo(grammar.parse_rcpt(arg, allow_utf8=txn.params.smtputf8))


def _data(conn: ServerConnection, arg: bytes) -> Event:
    txn = conn._txn
    assert txn is not None
    return commands.data_start(arg, used_bdat=txn.used_bdat, body=txn.params.body)


def _bdat(conn: ServerConnection, arg: bytes) -> Event | NeedData:
    """RFC 3030 §2: the chunk is read (kept or dropped) before any reply, whatever the state."""
    parsed = grammar.parse_bdat(arg)
    if parsed is None:
        raise RemoteProtocolError(S.SYNTAX_ERROR)  # the chunk size is unknown: nothing to skip
    size, last = parsed
    return conn._read_chunk(size, last=last)


def _starttls(conn: ServerConnection, arg: bytes) -> Event:
    return commands.starttls(arg, is_tls=conn.is_tls, can_starttls=conn.settings.can_starttls)


def _auth(conn: ServerConnection, arg: bytes) -> Event:
    return commands.auth_start(
        arg,
        mechanisms=conn._mechanisms,
        is_esmtp=conn._is_esmtp,
        is_authenticated=conn.is_authenticated,
        in_transaction=conn._txn is not None,
        tls_ok=conn.is_tls or not conn.settings.auth_requires_tls,
    )


def _expn(conn: ServerConnection, arg: bytes) -> Event:
    return conn._reject(S.NOT_IMPLEMENTED, "EXPN")  # lists are not expanded to strangers


_HANDLERS: dict[str, Callable[[ServerConnection, bytes], Event | NeedData]] = {
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


def _simple(verb: str) -> Callable[[ServerConnection, bytes], Event]:
    def handle(conn: ServerConnection, arg: bytes) -> Event:
        return commands.simple(verb, arg)

    return handle


_HANDLERS.update((verb, _simple(verb)) for verb in commands.SIMPLE)
