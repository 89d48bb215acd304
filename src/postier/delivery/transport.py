"""The contract between the delivery scheduler and the couriers that carry mail to a next hop.

Theory of operation. The scheduler decides *where* each recipient goes (a ``Destination``: the MX
hosts of a domain, a configured relay, or an LMTP server) and *what* goes there (one
``OutboundMessage`` with up to ``delivery.max_recipients_per_transaction`` of its recipients). A
``Courier`` carries it: it tries the destination's hosts in order (every address of each host), applies
the TLS policy, authenticates when the route has credentials, reuses an idle connection when it has
one, and returns exactly one ``Attempt`` per recipient, in the order given. It never raises for what
the network or the peer did: a refused connection, a timeout, a bad certificate or a 4xx greeting are
replies too (``4.4.1``, ``4.4.2``, ``4.7.5`` …), and the scheduler turns replies into queue outcomes
(2xx delivered, 4xx deferred or expired, 5xx failed) and bounces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from postier.delivery.security.dane import Tlsa
from postier.mail.envelope import Envelope, Recipient
from postier.mail.reply import Reply

__all__ = [
    "Attempt",
    "Courier",
    "Credentials",
    "Destination",
    "DestinationKind",
    "Hop",
    "OutboundMessage",
    "TlsPolicy",
]


class TlsPolicy(StrEnum):
    """How hard to insist on TLS with one destination (config ``delivery.tls``)."""

    NONE = "none"  # never STARTTLS
    OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered; plain text only when it is not offered
    REQUIRED = "required"  # STARTTLS or defer; any certificate
    VERIFY = "verify"  # STARTTLS or defer; chain and host name verified


class DestinationKind(StrEnum):
    MX = "mx"  # the recipient domain's MX hosts (or its implicit MX)
    RELAY = "relay"  # a configured smarthost / [[route]]
    LMTP = "lmtp"  # a local domain's LMTP server
    MAILDIR = "maildir"  # a local domain's Maildirs (hosts is empty; the local courier writes files)


@dataclass(frozen=True, slots=True)
class Hop:
    """One host to try. ``host`` is a DNS name or an IP address literal (resolved by the courier, A
    and AAAA), or, with ``unix_path`` set, a label for an LMTP socket. ``port`` is 25 for MX.

    The TLS plan of this host alone (``security.plan``), when it differs from the destination's:
    ``tls`` overrides ``Destination.tls``; ``tlsa`` non-empty means DANE (RFC 7672): TLS is
    mandatory and the certificate must match one of these records; ``refusal`` means the host must
    not be used (a TLSA lookup failed, no usable TLSA record) and is its site failure;
    ``tls_label`` / ``tls_source`` name the policy and where it came from, for the log."""

    host: str
    port: int = 25
    unix_path: str | None = None
    tls: TlsPolicy | None = None
    tlsa: tuple[Tlsa, ...] = ()
    refusal: Reply | None = None
    tls_label: str = ""
    tls_source: str = ""


@dataclass(frozen=True, slots=True)
class Credentials:
    """SASL credentials for a relay. ``password`` never appears in a repr or a log."""

    username: str
    password: str
    mechanism: str = "PLAIN"  # PLAIN or LOGIN

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, mechanism={self.mechanism!r})"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a batch of recipients goes. ``key`` names it for concurrency limits and connection reuse
    ("mx:example.org", "relay:user@smtp.example.net:587/verify", "lmtp:/run/dovecot/lmtp",
    "maildir:example.org").
    ``hosts`` are tried in order; under VERIFY a certificate must match the hop's ``host``."""

    key: str
    kind: DestinationKind
    domain: str  # the recipient domain this batch is for (A-label, lowercase)
    hosts: tuple[Hop, ...]
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    implicit_tls: bool = False
    credentials: Credentials | None = None
    tls_label: str = ""  # the policy in force, for the log: dane, mta-sts, verify, opportunistic …
    tls_source: str = ""  # where it came from: mta-sts:id=…, config:delivery.tls_policy, …
    refusal: Reply | None = None  # set: no host may be tried (an MTA-STS policy allows none of them)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One queued message as the courier sends it: ``envelope.sender`` (None: ``<>``), BODY, SMTPUTF8,
    RET and ENVID come from the envelope; ``body`` is the message as queued (CRLF line endings)."""

    queue_id: str
    envelope: Envelope
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result for one recipient. ``reply`` is the remote reply (to RCPT, or to the end of data
    for an accepted recipient), or Postier's own when no server answered (connection refused, TLS
    required but not offered …). ``remote_mta`` is "host [ip]:port" of the server that gave the reply,
    None when none did; ``tls`` e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384" or None for plain text.
    ``dsn_relayed`` is True when the peer accepted the recipient without offering DSN (RFC 3461 §4.1:
    a "relayed" notice is due if the sender asked NOTIFY=SUCCESS)."""

    recipient: Recipient
    reply: Reply
    remote_mta: str | None = None
    tls: str | None = None
    dsn_relayed: bool = False
    tls_policy: str | None = None  # the TLS policy applied (``Hop.tls_label``), for the log
    tls_source: str | None = None
    tls_failure: str | None = None  # MTA-STS testing: the RFC 8460 result type enforce would have hit


class Courier(Protocol):
    async def deliver(
        self, destination: Destination, message: OutboundMessage, recipients: Sequence[Recipient]
    ) -> list[Attempt]:
        """Carry ``message`` to ``recipients`` at ``destination``: one ``Attempt`` per recipient, in order."""
        ...

    async def close(self) -> None:
        """Close idle pooled connections (QUIT); called once when the server stops."""
        ...
