"""``POST /v1/messages``: the JSON request, and the message and envelope it makes.

Theory of operation. A request is either *structured* (``from``, ``to``/``cc``/``bcc``, ``subject``,
``text``, ``html``, ``headers``, ``attachments``), built into MIME with the stdlib ``email`` package
(policy SMTP: CRLF line ends, RFC 2047 words and RFC 2231 file names for non-ASCII text), or *raw*
(``raw``: a whole RFC 5322 message, sent as given but for CRLF line ends). The envelope sender is the
``from`` address; the recipients are to + cc + bcc (Bcc never appears in the headers). For a raw
message without them they are read from its From/To/Cc/Bcc fields, and a Bcc field is dropped.
Everything wrong with a request is a ``ComposeError`` naming the field, answered 422. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr

import msgspec

from postier.mail.address import Address, parse_mailbox
from postier.mail.envelope import BodyType, Envelope, Recipient
from postier.mail.errors import PostierError

__all__ = ["Attachment", "ComposeError", "Composed", "SendRequest", "compose"]

# Fields a caller may not set through ``headers``: the structure is ours to write.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "received",
        "return-path",
        "dkim-signature",
    }
)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,76}")  # RFC 5322 §3.6.8 ftext, kept short


class ComposeError(ValueError):
    """A request that cannot make a message; ``field`` names the JSON member at fault."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class Attachment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    filename: str
    content: str
    """The file's octets, base64."""
    content_type: str = "application/octet-stream"


class SendRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"sender": "from"}):
    sender: str = ""
    to: list[str] = []
    cc: list[str] = []
    bcc: list[str] = []
    reply_to: str = ""
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = {}
    attachments: list[Attachment] = []
    raw: str | None = None
    """A whole RFC 5322 message instead of the structured fields."""
    list_unsubscribe: bool = False
    """Add RFC 8058 one-click List-Unsubscribe fields (one recipient only)."""


@dataclass(frozen=True, slots=True)
class Composed:
    envelope: Envelope
    message: bytes


def _mailbox(field: str, text: str) -> Address:
    _, addr = parseaddr(text)
    if "@" not in addr:
        raise ComposeError(field, f"not an address: {text!r}")
    try:
        return parse_mailbox(addr, allow_utf8=True)
    except (PostierError, ValueError):
        raise ComposeError(field, f"not an address: {text!r}") from None


def _recipients(req: SendRequest, max_recipients: int) -> list[Address]:
    out: list[Address] = []
    for name in ("to", "cc", "bcc"):
        out += [_mailbox(name, text) for text in getattr(req, name)]
    if len(out) > max_recipients:
        raise ComposeError("to", f"more than {max_recipients} recipients")
    return out


def _header_address(field: str, text: str) -> HeaderAddress:
    name, addr = parseaddr(text)
    mailbox = _mailbox(field, text)
    del addr
    return HeaderAddress(display_name=name, username=mailbox.local_part, domain=mailbox.domain)


def _structured(req: SendRequest, hostname: str, now: datetime) -> EmailMessage:
    if req.text is None and req.html is None and not req.attachments:
        raise ComposeError("text", "a message needs text, html or attachments")
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _header_address("from", req.sender)
    for name in ("to", "cc"):
        values = getattr(req, name)
        if values:
            msg[name.capitalize()] = [_header_address(name, v) for v in values]
    if req.reply_to:
        msg["Reply-To"] = _header_address("reply_to", req.reply_to)
    msg["Subject"] = req.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=hostname)
    for name, value in req.headers.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _RESERVED:
            raise ComposeError("headers", f"{name!r} cannot be set this way")
        if "\r" in value or "\n" in value:
            raise ComposeError("headers", f"the value of {name!r} has a line break")
        msg[name] = value
    if req.text is not None:
        msg.set_content(req.text)
    if req.html is not None:
        if req.text is None:
            msg.set_content(req.html, subtype="html")
        else:
            msg.add_alternative(req.html, subtype="html")
    for i, att in enumerate(req.attachments):
        _attach(msg, att, f"attachments[{i}]")
    return msg


def _attach(msg: EmailMessage, att: Attachment, field: str) -> None:
    try:
        data = base64.b64decode(att.content, validate=True)
    except (binascii.Error, ValueError):
        raise ComposeError(f"{field}.content", "not base64") from None
    maintype, slash, subtype = att.content_type.partition("/")
    if not slash or not maintype or not subtype or any(c in att.content_type for c in "\r\n;"):
        raise ComposeError(f"{field}.content_type", "not a type/subtype")
    if not att.filename or any(c in att.filename for c in "\r\n/\\"):
        raise ComposeError(f"{field}.filename", "empty, or has a line break or a slash")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=att.filename)


def _raw(req: SendRequest, max_recipients: int) -> tuple[bytes, Address, list[Address]]:
    assert req.raw is not None
    data = req.raw.encode("utf-8")
    data = re.sub(rb"\r?\n", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    end = data.find(b"\r\n\r\n")
    header = data if end < 0 else data[: end + 4]
    parsed = BytesParser(policy=policy.SMTP).parsebytes(header, headersonly=True)
    sender = _mailbox("from", req.sender or str(parsed.get("From", "")))
    recipients = _recipients(req, max_recipients)
    if not recipients:
        fields = [str(v) for name in ("To", "Cc", "Bcc") for v in parsed.get_all(name, [])]
        recipients = [_mailbox("raw", addr) for _, addr in getaddresses(fields) if addr]
        if len(recipients) > max_recipients:
            raise ComposeError("raw", f"more than {max_recipients} recipients")
    if parsed.get("Bcc") is not None:
        data = _drop_bcc(data, end)
    return data, sender, recipients


def _drop_bcc(data: bytes, end: int) -> bytes:
    """The message without its Bcc field (and the field's folded lines)."""
    lines = data[: end + 2].split(b"\r\n")[:-1] if end >= 0 else data.split(b"\r\n")[:-1]
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(b"bcc:")
        if not skipping:
            kept.append(line)
    rest = data[end + 2 :] if end >= 0 else b""
    return b"\r\n".join(kept) + b"\r\n" + rest


def compose(req: SendRequest, *, hostname: str, max_recipients: int, now: datetime | None = None) -> Composed:
    """The envelope and the message bytes (CRLF line ends) of a request; ComposeError if it is bad."""
    if req.raw is not None:
        if req.text is not None or req.html is not None or req.attachments or req.subject or req.headers:
            raise ComposeError("raw", "a raw message comes alone (with from, to, cc, bcc at most)")
        message, sender, recipients = _raw(req, max_recipients)
    else:
        if not req.sender:
            raise ComposeError("from", "required")
        sender = _mailbox("from", req.sender)
        recipients = _recipients(req, max_recipients)
        built = _structured(req, hostname, now or datetime.now(UTC))
        utf8 = sender.is_utf8 or any(r.is_utf8 for r in recipients)  # RFC 6532 headers, not RFC 2047 words
        message = built.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    if not recipients:
        raise ComposeError("to", "at least one recipient (to, cc or bcc)")
    unique = list(dict.fromkeys(recipients))
    smtputf8 = sender.is_utf8 or any(r.is_utf8 for r in unique)
    body = BodyType.EIGHT_BIT_MIME if not message.isascii() else BodyType.SEVEN_BIT
    envelope = Envelope(
        sender=sender,
        recipients=tuple(Recipient(r) for r in unique),
        body=body,
        smtputf8=smtputf8,
    )
    return Composed(envelope, message)
