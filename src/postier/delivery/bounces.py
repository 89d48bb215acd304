"""Bounces and other delivery status notifications, from the scheduler's outcomes to the queue.

Theory of operation. The scheduler hands ``Bouncer.notify`` the reports of one message's recipients
that reached a state worth telling (failed, delayed, delivered, relayed). ``plan_notices`` (pure)
decides who is told what:

- a message with a sender: one DSN to the sender with every report its recipient's NOTIFY asks for
  (``postier.bounce.should_notify``: failures by default, delays when configured, NEVER nothing);
- a message with the null sender ``<>`` (a bounce, RFC 5321 §4.5.5) is never bounced. When one of
  its recipients fails, a "double bounce" goes to ``delivery.postmaster`` if set (a DSN about a
  failed DSN, from ``<>`` as well); if that one fails too, or no postmaster is set, the failure is
  logged and dropped — so no loop is possible.

Each DSN is built by ``postier.bounce.build_dsn`` (RFC 3464 multipart/report, the original or its
headers per RET, ENVID and ORCPT) and enqueued as a new message with ``dsn_envelope`` (null sender,
NOTIFY=NEVER). The caller records the recipients' outcomes only *after* ``notify`` returns: a crash in
between repeats the attempt and may send a second bounce, but never loses one. If the enqueue fails
(``QueueError``) the caller leaves the outcome unrecorded; the lease runs out and the attempt is made
again.

Reflection (issue 14, finding 3). NOTIFY=SUCCESS and NOTIFY=DELAY are honoured only for messages from a
trusted network (``relay.trusted_networks``), from an authenticated client, or made here (no client
address): ``withhold`` keeps back the delivered / relayed / delayed notices of any other message, and
the log says so (``bounce … result=withheld``). Port 25 still advertises DSN and takes NOTIFY, ENVID,
ORCPT and RET from anyone (a peer MTA's NOTIFY=NEVER and its ENVID are worth having, and hiding the
keyword would not stop a client that sends the parameter anyway); only what would go to a sender
address the client merely claims is withheld — a spoofed sender gets no success or delay notice it did
not ask for. Failure notices follow RFC 3461 for everyone. DSNs are built in a thread when the original
is large (``build_dsn`` never copies more than ``max_full_bytes`` of it).

The delay notice is sent once without a queue column (``is_delay_due``): the attempt whose previous
attempt was before ``arrival + delay_notice_s`` and which itself is at or after it sends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from postier.bounce import Action, DsnOptions, RecipientReport, build_dsn, dsn_envelope, should_notify
from postier.mail.address import Address
from postier.mail.envelope import ClientInfo, Envelope, Recipient, Ret
from postier.observe.maillog import mail_event
from postier.queue.model import MessageRecord, QueueId
from postier.queue.protocol import Queue

__all__ = [
    "BounceSettings",
    "Bouncer",
    "Expand",
    "Notice",
    "Sign",
    "is_delay_due",
    "plan_notices",
    "withhold",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_IN_THREAD_BYTES = 16 * 1024  # a DSN about a larger original is built off the event loop


@dataclass(frozen=True, slots=True)
class BounceSettings:
    """``reporting_mta``: our host name. ``postmaster``: where failed bounces go (None: dropped).
    ``delay_by_default``: send delay notices to recipients given without NOTIFY (RFC 3461 §4.1).
    ``max_full_bytes``: the most of the original a DSN returns. ``trusted_networks``: clients whose
    NOTIFY=SUCCESS/DELAY is honoured without AUTH."""

    reporting_mta: str
    postmaster: Address | None = None
    delay_by_default: bool = False
    max_full_bytes: int = 100_000
    trusted_networks: tuple[Network, ...] = ()

    def honours_success_and_delay(self, client: ClientInfo) -> bool:
        """Whether a message from ``client`` may have success and delay notices: authenticated, made
        here (no address), or from a trusted network."""
        if client.auth_user is not None or not client.ip:
            return True
        try:
            ip = ipaddress.ip_address(client.ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.trusted_networks)


@dataclass(frozen=True, slots=True)
class Notice:
    """One DSN to send: to ``to`` about ``reports``; ``is_double`` for a failed bounce's notice."""

    to: Address
    reports: tuple[RecipientReport, ...]
    is_double: bool = False


def plan_notices(
    envelope: Envelope, reports: Sequence[RecipientReport], settings: BounceSettings
) -> tuple[list[Notice], list[RecipientReport]]:
    """Who gets a DSN about which reports (see the module docstring), and the failures dropped
    because nobody can be told."""
    sender = envelope.sender
    if sender is not None:
        wanted = tuple(
            r
            for r in reports
            if should_notify(r.recipient, r.action, sender=sender, delay_by_default=settings.delay_by_default)
        )
        return ([Notice(sender, wanted)] if wanted else []), []
    failed = [r for r in reports if r.action is Action.FAILED]
    postmaster = settings.postmaster
    if postmaster is None:
        return [], failed
    told = tuple(r for r in failed if not _same(r.recipient.address, postmaster))
    dropped = [r for r in failed if _same(r.recipient.address, postmaster)]
    return ([Notice(postmaster, told, is_double=True)] if told else []), dropped


def withhold(
    envelope: Envelope, reports: Sequence[RecipientReport], settings: BounceSettings
) -> tuple[list[RecipientReport], list[RecipientReport]]:
    """The reports that may be told, and the success and delay reports withheld because the message
    came from a client that is neither trusted nor authenticated (see the module docstring)."""
    if settings.honours_success_and_delay(envelope.client):
        return list(reports), []
    told = [r for r in reports if r.action is Action.FAILED]
    return told, [r for r in reports if r.action is not Action.FAILED]


def is_delay_due(
    arrived_at: datetime, last_attempt_at: datetime | None, now: datetime, delay_notice_s: float
) -> bool:
    """True for the one attempt that crosses ``arrived_at + delay_notice_s``: the previous attempt
    (None: this is the first) came before it and this one is at or after it. 0 turns notices off."""
    if delay_notice_s <= 0:
        return False
    threshold = arrived_at + timedelta(seconds=delay_notice_s)
    previous = last_attempt_at if last_attempt_at is not None else arrived_at
    return previous < threshold <= now


Expand = Callable[[Iterable[Recipient]], tuple[Recipient, ...]]
Sign = Callable[[bytes], bytes]
"""A message Postier wrote → the DKIM-Signature fields to prepend (empty: not signed)."""


def _as_is(recipients: Iterable[Recipient]) -> tuple[Recipient, ...]:
    return tuple(recipients)


class Bouncer:
    """Builds and enqueues DSNs. ``on_enqueued`` is called after each enqueue (to wake delivery);
    ``expand`` turns a DSN's recipient into its final local mailboxes (aliases, as the SMTP server
    does for mail it receives: ``LocalDirectory.expand``); recipients elsewhere stay as they are."""

    def __init__(
        self,
        queue: Queue,
        settings: BounceSettings,
        *,
        clock: Callable[[], datetime],
        on_enqueued: Callable[[], None] = lambda: None,
        expand: Expand = _as_is,
        sign: Sign | None = None,
    ) -> None:
        self._sign = sign
        self._expand = expand
        self._queue = queue
        self._settings = settings
        self._clock = clock
        self._on_enqueued = on_enqueued

    async def notify(
        self, message: MessageRecord, body: bytes, reports: Sequence[RecipientReport]
    ) -> list[QueueId]:
        """Send the DSNs ``reports`` call for; the queue ids of the DSNs enqueued. Raises
        ``QueueError`` when one cannot be enqueued (nothing is recorded then: see the docstring)."""
        told, withheld = withhold(message.envelope, reports, self._settings)
        for report in withheld:
            if should_notify(
                report.recipient,
                report.action,
                sender=message.envelope.sender,
                delay_by_default=self._settings.delay_by_default,
            ):
                mail_event(
                    "bounce",
                    id=message.id,
                    rcpt=f"<{report.recipient.address}>",
                    action=report.action.value,
                    result="withheld",
                    reason="NOTIFY=SUCCESS/DELAY is honoured for trusted or authenticated clients only",
                )
        notices, dropped = plan_notices(message.envelope, told, self._settings)
        for report in dropped:
            mail_event(
                "bounce",
                id=message.id,
                rcpt=f"<{report.recipient.address}>",
                action=report.action.value,
                result="dropped",
                reason="a bounce failed and there is nobody to tell (delivery.postmaster)",
                reply=None if report.reply is None else str(report.reply),
            )
        sent = []
        for notice in notices:
            sent.append(await self._send(message, body, notice))
        return sent

    async def _send(self, message: MessageRecord, body: bytes, notice: Notice) -> QueueId:
        envelope = dataclasses.replace(message.envelope, sender=notice.to)
        if envelope.requiretls:  # RFC 8689 §5: a DSN never carries the content of a REQUIRETLS message
            envelope = dataclasses.replace(envelope, ret=Ret.HDRS)
        bounce_id = self._queue.new_id()
        options = DsnOptions(self._settings.reporting_mta, self._settings.max_full_bytes)
        build = partial(
            build_dsn,
            envelope,
            notice.reports,
            body,
            options=options,
            arrival_at=message.arrived_at,
            now=self._clock(),
            message_id=f"{bounce_id}.dsn",
            queue_id=message.id,
        )
        dsn = await asyncio.to_thread(build) if len(body) > _IN_THREAD_BYTES else build()
        if self._sign is not None:  # DKIM with the key of server.hostname's domain (docs/dkim.md)
            sign = self._sign
            dsn = (await asyncio.to_thread(sign, dsn) if len(dsn) > _IN_THREAD_BYTES else sign(dsn)) + dsn
        carrier = dsn_envelope(envelope, dsn)
        carrier = dataclasses.replace(carrier, recipients=self._expand(carrier.recipients))
        queued = await self._queue.enqueue(carrier, dsn, queue_id=bounce_id)
        self._on_enqueued()
        for report in notice.reports:
            mail_event(
                "bounce",
                id=message.id,
                rcpt=f"<{report.recipient.address}>",
                action=report.action.value,
                to=f"<{notice.to}>",
                bounce_id=queued,
                reason="double bounce" if notice.is_double else None,
                reply=None if report.reply is None else str(report.reply),
            )
        return queued


def _same(a: Address, b: Address) -> bool:
    return a.local_part.lower() == b.local_part.lower() and a.domain_key == b.domain_key
