"""The ``Received:`` trace header (RFC 5321 §4.4) prepended to every accepted message.

The ``with`` keyword follows RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA; SMTP for HELO) and RFC 6531 §3.7.3
(UTF8SMTP… when the transaction used SMTPUTF8). ``for <recipient>`` is added only for a single recipient,
so a message to many people does not list them all in every copy (as Postfix does).
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime

from postier.mail.address import Address

__all__ = ["protocol_keyword", "received_header"]

_date_cache: tuple[tuple[int, object], str] = ((0, None), "")


def protocol_keyword(*, esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """RFC 3848 / RFC 6531 ``with`` keyword for the transaction."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def _clean(text: str) -> str:
    """Keep header text printable and on one line whatever the client sent as its HELO name."""
    return "".join(ch if ch.isprintable() and ch not in "()\\" else "?" for ch in text)[:255]


def received_header(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    tls: str | None,
    recipients: tuple[Address, ...],
    now: datetime,
) -> bytes:
    """The folded header, CRLF-terminated. ``now`` must be an aware datetime."""
    ip_literal = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    lines = [f"Received: from {_clean(helo) or 'unknown'} ([{ip_literal}])"]
    lines.append(f"\tby {hostname} (Postier) with {protocol} id {queue_id}")
    if tls:
        lines.append(f"\t(using {_clean(tls)})")
    date = _header_date(now)
    if len(recipients) == 1:
        lines.append(f"\tfor <{_for_address(recipients[0])}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _for_address(address: Address) -> str:
    """The ``for`` address, its domain as an A-label when the local part is ASCII: a message whose
    client used SMTPUTF8 only to write a U-label domain then stays ASCII and can travel on to a peer
    without SMTPUTF8 (RFC 6531 §3.4) instead of being bounced for a header we added."""
    if address.local_part.isascii() and not address.domain.isascii():
        try:
            return f"{address.local_part}@{address.domain_key}"
        except ValueError:
            return str(address)
    return str(address)


def _header_date(now: datetime) -> str:
    """RFC 5322 §3.3 date-time; formatted once per second (messages in the same second share it)."""
    global _date_cache
    key, cached = (int(now.timestamp()), now.tzinfo), _date_cache
    if cached[0] != key:
        cached = _date_cache = (key, format_datetime(now.replace(microsecond=0)))
    return cached[1]
