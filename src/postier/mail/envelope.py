"""The envelope of one message (RFC 5321 §2.3.1): sender, recipients and the ESMTP parameters that
travel with them (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 DSN), plus what the
receiving server learned about the client. Bounces (RFC 3464) read NOTIFY/ORCPT/ENVID/RET from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from postier.mail.address import Address

__all__ = ["BodyType", "ClientInfo", "Envelope", "Notify", "Recipient", "Ret"]


class BodyType(StrEnum):
    """RFC 6152 / RFC 3030 BODY= values."""

    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"
    BINARY_MIME = "BINARYMIME"


class Ret(StrEnum):
    """RFC 3461 §4.3 RET=: what of the message a bounce carries."""

    FULL = "FULL"
    HDRS = "HDRS"


class Notify(StrEnum):
    """RFC 3461 §4.1 NOTIFY= keywords."""

    NEVER = "NEVER"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DELAY = "DELAY"


@dataclass(frozen=True, slots=True)
class Recipient:
    """One RCPT TO. ``notify`` is None when NOTIFY was not given (the default is FAILURE, DELAY
    at the MTA's discretion); ``orcpt`` is the ORCPT value decoded from xtext, e.g.
    ``rfc822;user@example.org``."""

    address: Address
    notify: frozenset[Notify] | None = None
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the receiving session knows of the client that handed the message over."""

    ip: str = ""
    port: int = 0
    helo: str = ""
    protocol: str = "ESMTP"  # RFC 3848 "with" keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP …
    tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    auth_user: str | None = None
    listener: str = ""  # the listener's address "127.0.0.1:2525"
    mailauth: str = ""  # what mail authentication found: "spf=pass dkim=pass:example.com dmarc=pass"


@dataclass(frozen=True, slots=True)
class Envelope:
    """``sender`` None is the null reverse-path ``<>`` (a bounce must never be bounced)."""

    sender: Address | None
    recipients: tuple[Recipient, ...]
    body: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False
    ret: Ret | None = None
    envid: str | None = None
    declared_size: int | None = None
    client: ClientInfo = field(default_factory=ClientInfo)
    requiretls: bool = False  # RFC 8689: relay only over verified TLS to servers offering REQUIRETLS
