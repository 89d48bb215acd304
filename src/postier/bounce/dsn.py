"""``build_dsn``: a delivery status notification as bytes (RFC 3464, RFC 6522, RFC 6533). Pure: the
clock and the ids are arguments.

Theory of operation. The bounce is a ``multipart/report; report-type=delivery-status`` (RFC 6522)
with three parts: a plain-English explanation, the machine-readable ``message/delivery-status``
(one per-message block, then one block per recipient, RFC 3464 §2.2–2.3), and the original message
(``message/rfc822``) or only its headers (``text/rfc822-headers``). The full message is returned only
for failures, when RET is not HDRS (RFC 3461 §4.3), when it is no bigger than ``max_full_bytes`` and
when none of its lines is too long to travel. Whatever the original looks like, the returned part is
never bigger than ``max_full_bytes`` (issue 14, finding 3: a bounce to a forged sender must not carry
10 MB): only that much of the original is ever read, and "headers" means the lines that are header
fields (RFC 5322 §2.2), up to the blank line or the first line that is not one — a body without a
blank line does not come back as "headers". When the original travelled with SMTPUTF8, the report
uses the RFC 6533 types (``global-delivery-status``, ``message/global``, ``message/global-headers``)
and may carry UTF-8 addresses. Output lines end in CRLF and are at most 998 octets (RFC 5322 §2.1.1).
The bounce's own envelope (``dsn_envelope``) has the null sender, so it can never be bounced again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from postier.bounce.report import Action, RecipientReport
from postier.bounce.text import MAX_LINE, field, human_text, rfc5322_date, subject_for
from postier.mail.address import Address
from postier.mail.envelope import BodyType, Envelope, Notify, Recipient, Ret

__all__ = ["DsnOptions", "build_dsn", "dsn_envelope"]

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_UNSAFE = re.compile(r"[\x00-\x20\x7f+=]")
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:|[ \t]")  # RFC 5322 §2.2: a field, or folded


@dataclass(frozen=True, slots=True)
class DsnOptions:
    """``reporting_mta``: our host name (Reporting-MTA, From: MAILER-DAEMON@…, Message-ID).
    ``max_full_bytes``: a larger original comes back as headers only. Default 100 kB."""

    reporting_mta: str
    max_full_bytes: int = 100_000


def build_dsn(
    envelope: Envelope,
    reports: Sequence[RecipientReport],
    original: bytes,
    *,
    options: DsnOptions,
    arrival_at: datetime,
    now: datetime,
    message_id: str,
    queue_id: str | None = None,
) -> bytes:
    """The DSN for ``reports`` (recipients of one message) to ``envelope.sender``.

    ``message_id`` is a unique id (without ``<>``; ``@reporting_mta`` is added when it has no ``@``).
    Raises ValueError for the null sender (a bounce is never bounced) or no reports."""
    if envelope.sender is None:
        raise ValueError("a bounce is never bounced: the sender is <>")
    if not reports:
        raise ValueError("a DSN reports on at least one recipient")
    is_global = _is_global(envelope, reports)
    cut = len(original) > options.max_full_bytes  # too big to return whole, whatever its line ends
    lines = _normalize(original[: options.max_full_bytes] if cut else original)
    if cut and lines:
        lines.pop()  # the last line may be cut in the middle
    boundary = _boundary(message_id, lines)
    parts = [
        _human_part(reports, options, now),
        _status_part(envelope, reports, options, arrival_at, queue_id, is_global),
        _original_part(envelope, reports, lines, options, is_global, cut=cut),
    ]
    out = _top_headers(envelope.sender, reports, options, now, message_id, boundary, is_global)
    out.append(b"")
    out.append(b"This is a MIME-encapsulated delivery status notification.")
    for part in parts:
        out.append(b"--" + boundary)
        out.extend(part)
    out.append(b"--" + boundary + b"--")
    return b"\r\n".join(out) + b"\r\n"


def dsn_envelope(original: Envelope, dsn: bytes) -> Envelope:
    """The envelope that carries a DSN about ``original``: from ``<>`` (RFC 5321
    §4.5.5) to the original sender, NOTIFY=NEVER (a DSN about a DSN is never wanted); about a
    REQUIRETLS message, itself REQUIRETLS (RFC 8689 §5)."""
    sender = original.sender
    if sender is None:
        raise ValueError("a bounce is never bounced: the sender is <>")
    return Envelope(
        sender=None,
        recipients=(Recipient(sender, notify=frozenset({Notify.NEVER})),),
        body=BodyType.SEVEN_BIT if dsn.isascii() else BodyType.EIGHT_BIT_MIME,
        smtputf8=sender.is_utf8 or original.smtputf8,
        declared_size=len(dsn),
        requiretls=original.requiretls,
    )


def _top_headers(
    sender: Address,
    reports: Sequence[RecipientReport],
    options: DsnOptions,
    now: datetime,
    message_id: str,
    boundary: bytes,
    is_global: bool,
) -> list[bytes]:
    host = options.reporting_mta
    mid = message_id if "@" in message_id else f"{message_id}@{host}"
    report_type = "global-delivery-status" if is_global else "delivery-status"
    fields = [
        field("From", f"Mail Delivery System <MAILER-DAEMON@{host}>"),
        field("To", f"<{sender}>"),
        field("Subject", subject_for(reports)),
        field("Date", rfc5322_date(now)),
        field("Message-ID", f"<{mid}>"),
        field("Auto-Submitted", "auto-replied"),  # RFC 3834 §5: DSNs are auto-replied
        field("MIME-Version", "1.0"),
        field(
            "Content-Type",
            f'multipart/report; report-type={report_type}; boundary="{boundary.decode()}"',
        ),
    ]
    return [f.encode() for f in fields]


def _human_part(reports: Sequence[RecipientReport], options: DsnOptions, now: datetime) -> list[bytes]:
    text = human_text(reports, options.reporting_mta, now)
    encoding = "7bit" if text.isascii() else "8bit"
    return [
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Description: Notification",
        f"Content-Transfer-Encoding: {encoding}".encode(),
        b"",
        *text.encode().split(b"\r\n"),
    ]


def _status_part(
    envelope: Envelope,
    reports: Sequence[RecipientReport],
    options: DsnOptions,
    arrival_at: datetime,
    queue_id: str | None,
    is_global: bool,
) -> list[bytes]:
    # RFC 3464 §2.2: per-message fields.
    block = [field("Reporting-MTA", f"dns; {options.reporting_mta}")]
    if queue_id:
        block.append(field("X-Postier-Queue-ID", queue_id))
    if envelope.envid is not None:
        block.append(field("Original-Envelope-Id", _safe(envelope.envid, is_global)))
    block.append(field("Arrival-Date", rfc5322_date(arrival_at)))
    blocks = [block] + [_recipient_block(r, is_global) for r in reports]
    kind = "global-delivery-status" if is_global else "delivery-status"
    body = "\r\n\r\n".join("\r\n".join(b) for b in blocks).encode()
    return [
        f"Content-Type: message/{kind}".encode(),
        b"Content-Description: Delivery report",
        b"Content-Transfer-Encoding: " + (b"7bit" if body.isascii() else b"8bit"),
        b"",
        *body.split(b"\r\n"),
        b"",
    ]


def _recipient_block(report: RecipientReport, is_global: bool) -> list[str]:
    """RFC 3464 §2.3: per-recipient fields, in the RFC's order."""
    recipient = report.recipient
    block = []
    if recipient.orcpt is not None:  # RFC 3464 §2.3.1: the ORCPT as given (decoded from xtext)
        addr_type, _, address = recipient.orcpt.partition(";")
        block.append(field("Original-Recipient", f"{addr_type.strip()};{_safe(address.strip(), is_global)}"))
    addr_type = "utf-8" if recipient.address.is_utf8 else "rfc822"  # RFC 6533 §3
    block.append(field("Final-Recipient", f"{addr_type}; {recipient.address}"))
    block.append(field("Action", report.action.value))
    block.append(field("Status", str(report.effective_status)))
    if report.remote_mta:
        block.append(field("Remote-MTA", f"dns; {report.remote_mta}"))
    if report.reply is not None:
        kind = "smtp" if report.remote_mta else "X-Postier"
        block.append(field("Diagnostic-Code", f"{kind}; {report.reply}"))
    if report.last_attempt_at is not None:
        block.append(field("Last-Attempt-Date", rfc5322_date(report.last_attempt_at)))
    if report.action is Action.DELAYED and report.will_retry_until is not None:
        block.append(field("Will-Retry-Until", rfc5322_date(report.will_retry_until)))
    return block


def _original_part(
    envelope: Envelope,
    reports: Sequence[RecipientReport],
    lines: list[bytes],
    options: DsnOptions,
    is_global: bool,
    *,
    cut: bool,
) -> list[bytes]:
    size = sum(len(line) + 2 for line in lines)
    full = (
        any(r.action is Action.FAILED for r in reports)  # RFC 3461 §4.3: RET is for failures only
        and envelope.ret is not Ret.HDRS
        and not cut
        and size <= options.max_full_bytes
        and all(len(line) <= MAX_LINE for line in lines)
    )
    if full:
        content, kind, description = lines, ("global" if is_global else "rfc822"), "Undelivered message"
        kind = f"message/{kind}"
    else:
        content = _header_section(lines, options.max_full_bytes)
        kind = "message/global-headers" if is_global else "text/rfc822-headers"
        description = "Undelivered message headers"
        if any(r.action is not Action.FAILED for r in reports):
            description = "Message headers"
    encoding = b"7bit" if all(line.isascii() for line in content) else b"8bit"
    return [
        f"Content-Type: {kind}".encode(),
        f"Content-Description: {description}".encode(),
        b"Content-Transfer-Encoding: " + encoding,
        b"",
        *content,
        b"",  # keeps the original's last CRLF: the CRLF before a boundary is the boundary's (RFC 2046 §5.1.1)
    ]


def _header_section(lines: list[bytes], max_bytes: int) -> list[bytes]:
    """The lines of the original's header section: header fields and their folded continuations, up to
    the blank line or the first line that is neither; each cut to MAX_LINE, at most ``max_bytes`` in all."""
    content: list[bytes] = []
    size = 0
    for line in lines:
        if not _HEADER_LINE.match(line) or (not content and line[:1] in b" \t"):
            break
        size += min(len(line), MAX_LINE) + 2
        if size > max_bytes:
            break
        content.append(line[:MAX_LINE])
    return content


def _normalize(original: bytes) -> list[bytes]:
    """The original's lines without line ends (any of CRLF, CR, LF), the final empty one dropped."""
    lines = _NEWLINE.split(original)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _boundary(message_id: str, lines: list[bytes]) -> bytes:
    """A boundary derived from the DSN's id, checked not to occur in the content (RFC 2046 §5.1.1)."""
    seed = hashlib.sha256(message_id.encode()).hexdigest()[:24]
    for n in range(1000):
        boundary = f"=_postier-dsn-{seed}-{n}".encode()
        if not any(boundary in line for line in lines):
            return boundary
    raise ValueError("no free MIME boundary")  # unreachable in practice


def _is_global(envelope: Envelope, reports: Sequence[RecipientReport]) -> bool:
    """RFC 6533: use the global types when the original needed SMTPUTF8."""
    sender_utf8 = envelope.sender is not None and envelope.sender.is_utf8
    return envelope.smtputf8 or sender_utf8 or any(r.recipient.address.is_utf8 for r in reports)


def _safe(value: str, is_global: bool) -> str:
    """A decoded ENVID/ORCPT address as it may stand in a field: as is when printable (ASCII, or
    UTF-8 in a global report); otherwise xtext-encoded (RFC 3461 §4) so that nothing is lost."""
    if value.isprintable() and " " not in value and (is_global or value.isascii()):
        return value
    return "".join(f"+{b:02X}" if _UNSAFE.match(chr(b)) or b > 126 else chr(b) for b in value.encode())
