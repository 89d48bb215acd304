"""Local delivery: the Maildir courier.

Theory of operation. ``MaildirCourier`` implements the ``Courier`` protocol of ``transport.py`` for
destinations of kind MAILDIR: each recipient is a final local mailbox (the server's
``LocalDirectory.expand`` resolved aliases, sub-addresses, catch-alls and postmaster before the
message was queued). Its copy is written into ``directory.maildir_for(recipient)`` by
``maildir.deliver_to_maildir`` in a worker thread, so the event loop never waits on an fsync, and
one ``Attempt`` per recipient comes back: ``250 2.0.0`` once the file is durable, ``550 5.1.1`` for
an address that is no mailbox here (the user was removed while the message waited), ``552 5.2.2``
when the message does not fit in the quota (RFC 3463 X.2.2: permanent, as a quota that is already
full is refused at RCPT with 452 instead), ``451 4.3.0`` for a disk error (retried later).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from postier.delivery.maildir import MailboxFullError, deliver_to_maildir
from postier.delivery.transport import Attempt, Destination, DestinationKind, OutboundMessage
from postier.mail.envelope import Recipient
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.recipients.directory import LocalDirectory

__all__ = ["MaildirCourier"]

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
