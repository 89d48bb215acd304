"""The delivery runner: takes due recipients from the queue and delivers local ones to Maildir.

Theory of operation: ``run_once`` claims up to ``batch`` due recipients with a lease of
``lease_s`` seconds (a runner that dies gives them back when the lease ends), delivers each one
and records every outcome in one ``queue.record`` call. A recipient in a local domain is written
to ``mail_root/<domain>/<user>/`` (see ``maildir.py``) in a worker thread, so the event loop never
waits on an fsync; it is recorded DELIVERED only after the file is durable. A disk error defers
it with the queue's backoff. Recipients of other domains are deferred with ``451 4.4.0`` until
outbound SMTP delivery exists (issue 4): the message waits in the queue instead of being lost or
bounced. The bare ``<Postmaster>`` (RFC 5321 §4.1.1.3) goes to ``postmaster@`` the first local
domain. Once a message is older than the queue's maximum age the recipient is FAILED (a bounce
is then due; bounces are not sent yet).

``run_forever`` repeats ``run_once``; between rounds it sleeps ``poll_s`` seconds or until
``wake()`` is called (the server calls it after an enqueue, so local mail goes out at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from postier.delivery.maildir import deliver_to_maildir
from postier.mail.address import Address
from postier.mail.domain import normalize_domain
from postier.mail.errors import QueueError, UnknownMessageError
from postier.observe.maillog import mail_event
from postier.queue.model import ClaimedRecipient, QueueId, RecipientResult, RecipientState
from postier.queue.protocol import Queue
from postier.queue.schedule import next_attempt

__all__ = ["DELIVERED_REPLY", "NO_OUTBOUND_REPLY", "LocalDelivery"]

DELIVERED_REPLY = "250 2.0.0 delivered to maildir"
NO_OUTBOUND_REPLY = "451 4.4.0 outbound delivery is not available yet"
# RFC 3463 §3.5 X.4.7: delivery time expired.
_EXPIRED_PREFIX = "554 5.4.7 delivery time expired; last reply: "
_log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Message:
    return_path: str
    body: bytes


class LocalDelivery:
    """Delivers queued mail for ``local_domains`` into Maildirs under ``mail_root``.

    ``local_domains`` are compared on their A-label lowercase form; the first one receives mail
    for the bare ``<Postmaster>``. ``hostname`` goes into the Maildir file names."""

    def __init__(
        self,
        queue: Queue,
        *,
        mail_root: Path,
        local_domains: Iterable[str],
        hostname: str,
        lease_s: float = 300.0,
        batch: int = 100,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._root = Path(mail_root)
        self._domains = tuple(normalize_domain(d) for d in local_domains)
        self._local = frozenset(self._domains)
        self._hostname = hostname
        self._lease_s = lease_s
        self._batch = batch
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a delivery round now (after an enqueue) instead of at the next poll."""
        self._wake.set()

    def set_local_domains(self, local_domains: Iterable[str]) -> None:
        """A configuration reload (SIGHUP): the next claimed recipients are routed by the new list."""
        self._domains = tuple(normalize_domain(d) for d in local_domains)
        self._local = frozenset(self._domains)

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
        messages: dict[QueueId, _Message | None] = {}
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

    async def _load(self, message_id: QueueId) -> _Message | None:
        try:
            record = await self._queue.get(message_id)
            body = await self._queue.read_body(message_id)
        except UnknownMessageError:
            return None
        sender = record.envelope.sender
        return _Message("" if sender is None else str(sender), body)

    def local_address(self, address: Address) -> Address | None:
        """The mailbox ``address`` is delivered to here, or None when it is not local."""
        if address.is_postmaster:
            return Address("postmaster", self._domains[0]) if self._domains else None
        if address.domain and not address.is_literal and address.domain_key in self._local:
            return address
        return None

    async def _attempt(self, item: ClaimedRecipient, message: _Message) -> RecipientResult:
        address = item.recipient.address
        target = self.local_address(address)
        if target is None:
            return self._defer(item, NO_OUTBOUND_REPLY)
        try:
            await asyncio.to_thread(
                deliver_to_maildir,
                self._root,
                target,
                message.body,
                return_path=message.return_path,
                hostname=self._hostname,
                clock=self._clock,
                rng=self._rng,
            )
        except OSError as exc:
            reply = f"451 4.3.0 cannot write to the mailbox: {exc.strerror or type(exc).__name__}"
            return self._defer(item, reply)
        return self._outcome(item, RecipientState.DELIVERED, DELIVERED_REPLY)

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
