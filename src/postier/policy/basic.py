"""The first checks: relay access, local recipients, the sender rule, message rate limits, mail loops.

In the pipeline's order (``policy.build``), each in its stage:

- ``sender`` (MAIL): an authenticated user may send only as a sender their rule gives them → 553 5.7.1.
- ``relay`` (RCPT): a recipient is local when the local directory says so (one answer for the whole
  server: a local domain, or the bare ``<Postmaster>`` of RFC 5321 §4.5.1, taken from anyone); a
  recipient in a relay domain is taken from anyone too; any other recipient only from a trusted
  network or an authenticated client → 554 5.7.1.
- ``relay-recipients`` (RCPT, ``relaydomains.py``): a relay domain's recipient list → 550 5.1.1.
- ``recipient`` (RCPT): an unknown local recipient → 550 5.1.1 now, never accept-then-bounce; a full
  mailbox → 452 4.2.2.
- ``rate`` (RCPT, at the first accepted recipient of a message): messages per hour per client IP and
  per authenticated user → 450 4.7.1 (RFC 5321 §4.3.2 allows 450 at RCPT, not at MAIL). Messages are
  counted once queued (``RateCheck.count``).
- ``loop`` (DATA): a message that already carries ``MAX_HOPS`` ``Received:`` fields → 554 5.4.6.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.policy.context import Client, Message, Transaction
from postier.policy.ratelimit import RateLimits
from postier.policy.relay import RelayPolicy
from postier.policy.verdict import ACCEPT, Verdict, defer, reject

__all__ = ["MAX_HOPS", "LoopCheck", "RateCheck", "RecipientCheck", "Recipients", "RelayCheck", "SenderCheck"]

MAX_HOPS = 100
"""RFC 5321 §6.3: a message with this many ``Received:`` fields already is in a loop (the RFC asks
for a threshold of at least 100): an alias forwarding to a server that forwards back, say."""

_RECEIVED = re.compile(rb"(?:\A|\n)received:", re.IGNORECASE)


class Recipients(Protocol):
    """What the checks need of the local directory (``users.directory.LocalDirectory``)."""

    def is_local(self, address: Address) -> bool: ...

    def check(self, address: Address) -> Reply | None: ...


@dataclass(frozen=True, slots=True)
class SenderCheck:
    rule: Callable[[str, Address | None], bool]
    name: str = "sender"

    def on_mail(self, client: Client, txn: Transaction) -> Verdict:
        user = client.auth_user
        if user is None or self.rule(user, txn.sender):
            return ACCEPT
        return reject(S.SENDER_NOT_OWNED, f"user {user} may not send as <{txn.sender or ''}>")


@dataclass(frozen=True, slots=True)
class RelayCheck:
    relay: RelayPolicy
    directory: Recipients | None = None
    name: str = "relay"

    def is_local(self, address: Address) -> bool:
        if self.directory is not None:
            return self.directory.is_local(address)
        return address.is_postmaster or self.relay.is_local(address)

    def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        if client.is_ours:
            return ACCEPT
        ours = self.is_local(rcpt.address) or self.relay.is_relay_domain(rcpt.address)
        if self.relay.may_receive(rcpt.address, is_local=ours):
            return ACCEPT
        return reject(S.RELAY_DENIED, "relay access denied")


@dataclass(frozen=True, slots=True)
class RecipientCheck:
    directory: Recipients
    name: str = "recipient"

    def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        refusal = self.directory.check(rcpt.address)
        if refusal is None:
            return ACCEPT
        if refusal.code // 100 == 4:
            return defer(refusal, "mailbox full")
        return reject(refusal, "unknown user" if refusal == S.UNKNOWN_USER else "refused by the directory")


@dataclass(frozen=True, slots=True)
class RateCheck:
    limits: RateLimits
    name: str = "rate"

    def applies(self, client: Client) -> bool:
        """Trusted networks are exempt unless configured otherwise."""
        return not (self.limits.exempt_trusted and client.is_trusted)

    def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        if txn.recipients or not self.applies(client):
            return ACCEPT
        limits, now = self.limits, time.monotonic()
        by_ip, by_user = limits.messages_per_ip, limits.messages_per_user
        if by_ip is not None and not by_ip.allows(client.ip, now):
            return defer(S.RATE_LIMITED, f"rate limit: messages per hour from {client.ip}")
        user = client.auth_user
        if by_user is not None and user is not None and not by_user.allows(user, now):
            return defer(S.RATE_LIMITED, f"rate limit: messages per hour by {user}")
        return ACCEPT

    def count(self, client: Client) -> None:
        """Count one queued message against the client's (and the user's) hourly limits."""
        if not self.applies(client):
            return
        limits, now = self.limits, time.monotonic()
        if limits.messages_per_ip is not None:
            limits.messages_per_ip.record(client.ip, now)
        if limits.messages_per_user is not None and client.auth_user is not None:
            limits.messages_per_user.record(client.auth_user, now)


@dataclass(frozen=True, slots=True)
class LoopCheck:
    max_hops: int = MAX_HOPS
    name: str = "loop"

    def on_data(self, client: Client, txn: Transaction, message: Message) -> Verdict:
        if hop_count(message.header, stop_at=self.max_hops) >= self.max_hops:
            return reject(S.TOO_MANY_HOPS, "hop count")
        return ACCEPT


def hop_count(header: bytes, *, stop_at: int = MAX_HOPS) -> int:
    """The ``Received:`` fields in a header section, counted up to ``stop_at`` (one C-speed scan)."""
    count = 0
    for _ in _RECEIVED.finditer(header):
        count += 1
        if count >= stop_at:
            break
    return count
