"""Commands whose answer depends only on their argument and a few session flags: pure functions that
build the event or raise ``RemoteProtocolError`` with the refusal (RFC 5321 §4.3.2 codes)."""

from __future__ import annotations

from postier.mail.envelope import BodyType
from postier.mail.errors import RemoteProtocolError
from postier.mail.replies import S
from postier.smtp.server.events import AuthStart, DataStart, Event, Noop, Quit, Reset, StartTls

__all__ = ["SIMPLE", "auth_start", "data_start", "simple", "starttls"]

_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")

SIMPLE = frozenset({"NOOP", "HELP", "VRFY", "RSET", "QUIT"})


def simple(verb: str, arg: bytes) -> Event:
    """NOOP, HELP, VRFY, RSET, QUIT: answered by the engine itself."""
    if verb == "NOOP":
        return Noop(S.NOOP_OK)  # RFC 5321 §4.1.1.9: NOOP [SP String]
    if verb == "HELP":
        return Noop(S.HELP)  # RFC 5321 §4.1.1.8: HELP [SP String]
    if verb == "VRFY":
        if not arg.strip():
            raise RemoteProtocolError(S.SYNTAX_ERROR)
        return Noop(S.VRFY_CANNOT)  # RFC 5321 §3.5.3: 252, never confirms
    if arg:  # RSET and QUIT take no argument (RFC 5321 §4.1.1.5, §4.1.1.10)
        raise RemoteProtocolError(S.SYNTAX_ERROR)
    return Reset(S.RESET_OK) if verb == "RSET" else Quit(S.BYE)


def data_start(arg: bytes, *, used_bdat: bool, body: BodyType | None) -> DataStart:
    if arg:
        raise RemoteProtocolError(S.SYNTAX_ERROR)
    if used_bdat:
        raise RemoteProtocolError(S.DATA_AFTER_BDAT)  # RFC 3030 §2: no mixing in one transaction
    if body is BodyType.BINARY_MIME:
        raise RemoteProtocolError(S.BINARYMIME_NEEDS_BDAT)  # RFC 3030 §3
    return DataStart()


def starttls(arg: bytes, *, is_tls: bool, can_starttls: bool) -> StartTls:
    if arg:
        raise RemoteProtocolError(S.SYNTAX_ERROR)  # RFC 3207 §4: no parameters
    if is_tls:
        raise RemoteProtocolError(S.TLS_ALREADY)
    if not can_starttls:
        raise RemoteProtocolError(S.NOT_IMPLEMENTED)
    return StartTls()


def auth_start(
    arg: bytes,
    *,
    mechanisms: tuple[str, ...],
    is_esmtp: bool,
    is_authenticated: bool,
    in_transaction: bool,
    tls_ok: bool,
) -> AuthStart:
    """RFC 4954 §4: ``AUTH mechanism [initial-response]``, checked in the RFC's order."""
    if not mechanisms:
        raise RemoteProtocolError(S.NOT_IMPLEMENTED)
    if not is_esmtp:
        raise RemoteProtocolError(S.AUTH_NEEDS_EHLO)
    if is_authenticated:
        raise RemoteProtocolError(S.AUTH_ALREADY)
    if in_transaction:
        raise RemoteProtocolError(S.IN_TRANSACTION)
    if not tls_ok:
        raise RemoteProtocolError(S.ENCRYPTION_REQUIRED)  # RFC 4954 §6: 538 5.7.11
    words = arg.split(b" ")
    if not 1 <= len(words) <= 2 or not words[0] or not words[0].isascii():
        raise RemoteProtocolError(S.SYNTAX_ERROR)
    mechanism = words[0].decode("ascii").upper()
    if mechanism not in mechanisms:
        raise RemoteProtocolError(S.AUTH_MECHANISM_UNKNOWN)
    if len(words) == 1:
        return AuthStart(mechanism, None)
    initial = words[1]
    if not initial or not _B64.issuperset(initial):
        raise RemoteProtocolError(S.AUTH_MALFORMED)
    return AuthStart(mechanism, initial.decode("ascii"))
