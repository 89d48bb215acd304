"""Which domain signs a message: the From: header's domain (what DMARC aligns with, RFC 7489 §3.1)
or the envelope sender's, per ``[dkim] sign_by``; and for the mail Postier writes itself, the domain
of ``server.hostname`` (the host name, or the nearest parent domain that has a key)."""

from __future__ import annotations

import re
from email.utils import getaddresses

from postier.mail.address import Address
from postier.mail.domain import normalize_domain
from postier.mailauth.dkim.canon import header_fields, split_message
from postier.mailauth.dkim.signer import DkimSigner

__all__ = ["from_domain", "host_domain", "signing_domain"]

# ``Name <local@domain>`` or ``local@domain`` with no quote, comment, group, list or second address.
_ATOM = rb'[^"(),:;<>@\\\s]+'
_NAME = rb'[^"(),:;<>@\\\r\n]*'
_SIMPLE = re.compile(
    rb"[ \t]*(?:" + _NAME + rb"<" + _ATOM + rb"@(" + _ATOM + rb")>|" + _ATOM + rb"@(" + _ATOM + rb"))[ \t]*"
)


def from_domain(message: bytes) -> str | None:
    """The one domain of the From: addresses (A-label, lowercase). None without a From:, with two
    From: fields, with addresses of several domains, or with an unreadable one."""
    header, _ = split_message(message)
    values = [raw.partition(b":")[2] for name, raw in header_fields(header) if name == b"from"]
    if len(values) != 1:
        return None
    raw = values[0]
    simple = _SIMPLE.fullmatch(raw)  # one plain address: no comments, quotes or lists to parse
    if simple is not None:
        try:
            return normalize_domain((simple.group(1) or simple.group(2)).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
    text = raw.replace(b"\r\n", b"").decode("utf-8", "replace")
    domains = set()
    for _, address in getaddresses([text]):
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            return None
        try:
            domains.add(normalize_domain(domain))
        except ValueError:
            return None
    return domains.pop() if len(domains) == 1 else None


def signing_domain(message: bytes, sender: Address | None, sign_by: str) -> str | None:
    """The domain whose key would sign ``message``, per ``sign_by`` ("from" or "sender")."""
    if sign_by == "sender":
        if sender is None:
            return None
        try:
            return sender.domain_key
        except ValueError:
            return None
    return from_domain(message)


def host_domain(signer: DkimSigner, hostname: str) -> str | None:
    """For mail Postier writes: ``hostname`` or its nearest parent (two labels at least) that has a
    signing key; None when none has."""
    try:
        labels = normalize_domain(hostname).split(".")
    except ValueError:
        return None
    for i in range(len(labels) - 1):
        domain = ".".join(labels[i:])
        if signer.keys_for(domain):
            return domain
    return None
