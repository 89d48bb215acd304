"""What the client sends for one message: the body's wire form, the checks against the peer's
extensions, and the MAIL/RCPT command lines with their ESMTP parameters. Pure functions.

Choices, deliberately:

- Line endings: every bare LF and every bare CR in the body becomes CRLF, and a body that does not end
  with CRLF gets one (RFC 5321 §2.3.8: only CRLF ends a line). A message received over BDAT/BINARYMIME
  may hold bare line ends; sending them as-is would let two servers disagree about where lines (and
  the message) end — and the Postier server refuses them anyway.
- DATA, never BDAT: every server that offers CHUNKING also takes DATA, and DATA lets the engine hold
  the body back until the 354 says some recipient was accepted. BINARYMIME is therefore not sent.
- Long lines (over 998 octets) are sent unchanged: the peer decides (RFC 5321 §4.5.3.1.6).
- The checks run before anything is sent and give a reply value, not an exception: SIZE over the
  peer's limit → 552 5.3.4 (RFC 1870 §6), SMTPUTF8 needed but missing → 553 5.6.7 (RFC 6531 §3.5),
  8-bit body without 8BITMIME → 554 5.6.3 (RFC 6152 §3: do not corrupt it by sending it as 7-bit).
- DSN parameters go out only when the peer offers DSN (RFC 3461 §4), and then only in forms that
  survive: an ORCPT or ENVID with non-ASCII characters is left out (RFC 6533's UTF-8 xtext is not
  spoken yet) — the parameters are optional hints.
"""

from __future__ import annotations

from dataclasses import dataclass

from postier.mail.address import Address
from postier.mail.envelope import Notify, Recipient, Ret
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client.replies import Extensions
from postier.smtp.framing import dot_stuff
from postier.smtp.grammar import xtext_encode

__all__ = [
    "Message",
    "check_message",
    "mail_line",
    "normalise_line_endings",
    "prepare_message",
    "rcpt_line",
]

_NOTIFY_ORDER = (Notify.NEVER, Notify.SUCCESS, Notify.FAILURE, Notify.DELAY)
MAX_ENVID = 100  # RFC 3461 §4.4, in xtext form
MAX_ORCPT = 500  # RFC 3461 §4.2


def normalise_line_endings(body: bytes) -> bytes:
    """Bare LF and bare CR become CRLF; a non-empty body ends with CRLF. O(n), at C speed."""
    crlf = body.count(b"\r\n")
    if body.count(b"\r") != crlf or body.count(b"\n") != crlf:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


@dataclass(frozen=True, slots=True)
class Message:
    """A body made ready: ``size`` (RFC 1870: octets with CRLFs, without stuffing or the final dot),
    whether it has 8-bit octets, and ``wire``: dot-stuffed and terminated by ``.<CRLF>``."""

    size: int
    is_8bit: bool
    wire: bytes


def prepare_message(body: bytes) -> Message:
    normal = normalise_line_endings(body)
    return Message(size=len(normal), is_8bit=not normal.isascii(), wire=dot_stuff(normal))


def needs_smtputf8(sender: Address | None, recipients: list[Recipient], smtputf8: bool, body: bytes) -> bool:
    """Whether only an SMTPUTF8 peer can take this message: a non-ASCII envelope address, or a message
    that arrived with SMTPUTF8 and has non-ASCII in its header section (RFC 6531 §3.4, RFC 6532).
    A message that arrived with SMTPUTF8 but whose envelope and headers are ASCII (the client used
    SMTPUTF8 only for a U-label that became an A-label mailbox) does not need it — as Postfix judges
    (SMTPUTF8_README, "smtputf8_autodetect") — so it is delivered rather than bounced."""
    if (sender is not None and sender.is_utf8) or any(r.address.is_utf8 for r in recipients):
        return True
    return smtputf8 and not header_section(body).isascii()


def header_section(body: bytes) -> bytes:
    """The header section: up to the first empty line (RFC 5322 §2.1), or the whole message."""
    if body.startswith((b"\r\n", b"\n")):
        return b""
    end = body.find(b"\n\r\n")
    if end < 0:
        end = body.find(b"\n\n")
    return body if end < 0 else body[: end + 1]


def check_message(message: Message, utf8: bool, extensions: Extensions) -> Reply | None:
    """The local refusal when the peer cannot take this message as it is; None when it can."""
    limit = extensions.max_size
    if limit is not None and message.size > limit:
        return Reply(
            552,
            EnhancedStatus(5, 3, 4),
            f"Message size {message.size} exceeds the remote server's limit of {limit} octets",
        )
    if utf8 and not extensions.has("SMTPUTF8"):
        return Reply(553, EnhancedStatus(5, 6, 7), "The remote server does not support SMTPUTF8")
    if message.is_8bit and not extensions.has("8BITMIME"):
        return Reply(
            554,
            EnhancedStatus(5, 6, 3),
            "Message has 8-bit content and the remote server does not support 8BITMIME",
        )
    return None


def _path(address: Address | None) -> str:
    return "<>" if address is None else f"<{address}>"


def mail_line(
    sender: Address | None,
    message: Message,
    extensions: Extensions,
    *,
    utf8: bool,
    ret: Ret | None,
    envid: str | None,
    requiretls: bool = False,
) -> bytes:
    """``MAIL FROM:<…>`` with SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET and ENVID
    (RFC 3461) — each only when the peer offers the extension — and REQUIRETLS (RFC 8689) when asked
    (the courier only asks of a peer that offers it)."""
    words = [f"MAIL FROM:{_path(sender)}"]
    if extensions.has("SIZE"):
        words.append(f"SIZE={message.size}")
    if message.is_8bit and extensions.has("8BITMIME"):
        words.append("BODY=8BITMIME")
    if utf8:
        words.append("SMTPUTF8")
    if extensions.has("DSN"):
        if ret is not None:
            words.append(f"RET={ret.value}")
        if envid and envid.isascii() and len(xtext_encode(envid)) <= MAX_ENVID:
            words.append(f"ENVID={xtext_encode(envid)}")
    if requiretls:
        words.append("REQUIRETLS")
    return _line(words)


def rcpt_line(recipient: Recipient, extensions: Extensions) -> bytes:
    """``RCPT TO:<…>`` with NOTIFY and ORCPT (RFC 3461 §4.1, §4.2) when the peer offers DSN."""
    words = [f"RCPT TO:{_path(recipient.address)}"]
    if extensions.has("DSN"):
        if recipient.notify:
            words.append("NOTIFY=" + ",".join(n.value for n in _NOTIFY_ORDER if n in recipient.notify))
        orcpt = _orcpt(recipient.orcpt)
        if orcpt is not None:
            words.append(f"ORCPT={orcpt}")
    return _line(words)


def _orcpt(value: str | None) -> str | None:
    """``rfc822;user@example.org`` → ``rfc822;`` + xtext; None when it cannot travel as xtext."""
    if not value or not value.isascii():
        return None
    addr_type, semi, address = value.partition(";")
    if not semi or not address or not addr_type.replace("-", "").isalnum():
        return None
    encoded = f"{addr_type};{xtext_encode(address)}"
    return encoded if len(encoded) <= MAX_ORCPT else None


def _line(words: list[str]) -> bytes:
    line = " ".join(words)
    if "\r" in line or "\n" in line:  # addresses come from our parser: this is a bug, not input
        raise ValueError("line break inside an SMTP command")
    return (line + "\r\n").encode("utf-8")
