"""Local delivery: the Maildir courier, and the runner that still drives it from the queue.

Theory of operation. ``MaildirCourier`` implements the ``Courier`` protocol of ``transport.py`` for
destinations of kind MAILDIR: each recipient is a final local mailbox (the server's
``LocalDirectory.expand`` resolved aliases, sub-addresses, catch-alls and postmaster before the
message was queued). Its copy is written into ``directory.maildir_for(recipient)`` by
``maildir.deliver_to_maildir`` in a worker thread, so the event loop never waits on an fsync, and
one ``Attempt`` per recipient comes back: ``250 2.0.0`` once the file is durable, ``550 5.1.1`` for
an address that is no mailbox here (the user was removed while the message waited), ``552 5.2.2``
when the message does not fit in the quota (RFC 3463 X.2.2: permanent, as a quota that is already
full is refused at RCPT with 452 instead), ``451 4.3.0`` for a disk error (retried later).

``LocalDelivery`` is the queue-claiming loop that runs it until the delivery scheduler replaces it:
``run_once`` claims up to ``batch`` due recipients with a lease of ``lease_s`` seconds, hands each
local one to the courier, defers the others with ``451 4.4.0`` (no outbound delivery in this runner)
and records every outcome in one ``queue.record`` call: 2xx delivered, 4xx deferred (failed once
the message is older than the queue's maximum age), 5xx failed. ``run_forever`` repeats
``run_once``; between rounds it sleeps ``poll_s`` seconds or until ``wake()`` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from postier.delivery.maildir import MailboxFullError, deliver_to_maildir
from postier.delivery.transport import Attempt, Destination, DestinationKind, OutboundMessage
from postier.mail.envelope import Recipient
from postier.mail.errors import QueueError, UnknownMessageError
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.observe.maillog import mail_event
from postier.queue.model import ClaimedRecipient, QueueId, RecipientResult, RecipientState
from postier.queue.protocol import Queue
from postier.queue.schedule import next_attempt
from postier.users.directory import LocalDirectory

__all__ = ["DELIVERED_REPLY", "NO_OUTBOUND_REPLY", "LocalDelivery", "MaildirCourier"]

DELIVERED_REPLY = str(S.DELIVERED_TO_MAILDIR)
NO_OUTBOUND_REPLY = "451 4.4.0 outbound delivery is not available yet"
# RFC 3463 §3.5 X.4.7: delivery time expired.
_EXPIRED_PREFIX = "554 5.4.7 delivery time expired; last reply: "
_log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MaildirCourier:
    """Writes each recipient's copy into its Maildir (a ``Courier`` for MAILDIR destinations)."""

    def __init__(
        self,
        directory: LocalDirectory,
        *,
        hostname: str,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._directory = directory
        self._hostname = hostname
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()

    async def deliver(
        self, destination: Destination, message: OutboundMessage, recipients: Sequence[Recipient]
    ) -> list[Attempt]:
        """One Attempt per recipient, in order; never raises for what the disk did."""
        if destination.kind is not DestinationKind.MAILDIR:
            raise ValueError(f"MaildirCourier cannot deliver to {destination.kind} destinations")
        return [Attempt(r, await self._deliver_one(message, r)) for r in recipients]

    async def close(self) -> None:
        """Nothing pooled: files are closed after each message."""

    async def _deliver_one(self, message: OutboundMessage, recipient: Recipient) -> Reply:
        address = recipient.address
        if not self._directory.is_mailbox(address):
            _log.warning("maildir: id=%s <%s> is no local mailbox", message.queue_id, address)
            return S.UNKNOWN_USER
        maildir = self._directory.maildir_for(address)
        sender = message.envelope.sender
        try:
            await asyncio.to_thread(
                deliver_to_maildir,
                maildir,
                message.body,
                return_path="" if sender is None else str(sender),
                delivered_to=str(address),
                hostname=self._hostname,
                clock=self._clock,
                rng=self._rng,
                quota_bytes=self._directory.quota_bytes,
            )
        except MailboxFullError as exc:
            _log.info("maildir: id=%s <%s> over quota: %s", message.queue_id, address, exc)
            return S.MAILBOX_OVER_QUOTA
        except OSError as exc:
            _log.error("maildir: id=%s cannot write to %s: %s", message.queue_id, maildir, exc)
            return S.MAILBOX_WRITE_ERROR
        return S.DELIVERED_TO_MAILDIR


class LocalDelivery:
    """Delivers queued mail for the local domains of ``directory`` through a ``MaildirCourier``;
    defers every other recipient (this runner has no outbound delivery)."""

    def __init__(
        self,
        queue: Queue,
        *,
        directory: LocalDirectory,
        hostname: str,
        lease_s: float = 300.0,
        batch: int = 100,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._directory = directory
        self._lease_s = lease_s
        self._batch = batch
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._courier = MaildirCourier(directory, hostname=hostname, clock=clock, rng=self._rng)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a delivery round now (after an enqueue) instead of at the next poll."""
        self._wake.set()

    def set_local_domains(self, local_domains: Iterable[str]) -> None:
        """A configuration reload (SIGHUP): the next claimed recipients are routed by the new list
        (the directory is shared with the server, so RCPT checks follow it too)."""
        self._directory.set_local_domains(local_domains)

    async def run_forever(self, poll_s: float = 1.0) -> None:
        """Deliver until cancelled. A full batch is followed at once by the next round; a queue
        error is logged and retried after ``poll_s``."""
        while True:
            self._wake.clear()
            try:
                done = await self.run_once()
            except QueueError:
                _log.exception("delivery round failed; retrying")
                done = 0
            if done >= self._batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=poll_s)

    async def run_once(self) -> int:
        """Claim due recipients, deliver or defer each, record the outcomes; return how many."""
        now = self._clock()
        claims = await self._queue.claim(now, self._lease_s, self._batch)
        messages: dict[QueueId, OutboundMessage | None] = {}
        results: list[RecipientResult] = []
        for claim in claims:
            for item in claim.recipients:
                if item.message_id not in messages:
                    messages[item.message_id] = await self._load(item.message_id)
                message = messages[item.message_id]
                if message is None:
                    continue  # deleted since the claim: nothing to deliver, nothing to record
                results.append(await self._attempt(item, message))
        if results:
            await self._queue.record(results, self._clock())
        return len(results)

    async def _load(self, message_id: QueueId) -> OutboundMessage | None:
        try:
            record = await self._queue.get(message_id)
            body = await self._queue.read_body(message_id)
        except UnknownMessageError:
            return None
        return OutboundMessage(str(message_id), record.envelope, body)

    async def _attempt(self, item: ClaimedRecipient, message: OutboundMessage) -> RecipientResult:
        address = item.recipient.address
        if not self._directory.is_local(address):
            return self._defer(item, NO_OUTBOUND_REPLY)
        domain = address.domain_key if address.domain else ""
        destination = Destination(f"maildir:{domain}", DestinationKind.MAILDIR, domain, hosts=())
        [attempt] = await self._courier.deliver(destination, message, [item.recipient])
        reply = attempt.reply
        if reply.is_positive:
            return self._outcome(item, RecipientState.DELIVERED, str(reply))
        if reply.is_transient:
            return self._defer(item, str(reply))
        return self._outcome(item, RecipientState.FAILED, str(reply))

    def _defer(self, item: ClaimedRecipient, reply: str) -> RecipientResult:
        now = self._clock()
        when = next_attempt(item.attempts + 1, item.arrived_at, now, rng=self._rng)
        if when is None:  # RFC 5321 §4.5.4.1: give up after the maximum time in the queue
            return self._outcome(item, RecipientState.FAILED, _EXPIRED_PREFIX + reply)
        return self._outcome(item, RecipientState.DEFERRED, reply, when)

    def _outcome(
        self,
        item: ClaimedRecipient,
        state: RecipientState,
        reply: str,
        when: datetime | None = None,
    ) -> RecipientResult:
        mail_event(
            "delivery",
            id=item.message_id,
            rcpt=str(item.recipient.address),
            result=state.value,
            reply=reply,
            attempt=item.attempts + 1,
        )
        return RecipientResult(item.message_id, item.index, state, reply, when)
