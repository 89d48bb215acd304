"""The values the queue hands out and takes in. Backend-neutral: no SQL, no SQLite types.

States of one recipient (each recipient of a message moves on its own)::

    queued ──claim──▶ (leased) ──deferred──▶ deferred ──claim──▶ … ──▶ delivered | failed
       ▲                  │ lease expires: back to due, unchanged
       └──────────────────┘

``delivered`` and ``failed`` are final: a final recipient is never claimed again and never changes.
A message is ``active`` (its pending recipients may be claimed), ``held`` (kept, never claimed until
released) or ``done`` (every recipient is final; kept for the retention time so "what happened to my
message" has an answer, then purged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NewType

from postier.mail.envelope import Envelope, Recipient

__all__ = [
    "AGE_BUCKETS_MIN",
    "Claim",
    "ClaimedRecipient",
    "MessageRecord",
    "MessageStatus",
    "MessageSummary",
    "PurgeResult",
    "QueueFilter",
    "QueueId",
    "QueueStats",
    "RecipientRecord",
    "RecipientResult",
    "RecipientState",
]

QueueId = NewType("QueueId", str)
"""16 characters of Crockford base32: 50 bits of arrival time in ms, then 30 bits of counter."""

AGE_BUCKETS_MIN: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
"""Upper bounds, in minutes, of the age buckets of ``QueueStats`` (Postfix qshape's); one more
bucket holds everything older than the last bound."""


class RecipientState(StrEnum):
    QUEUED = "queued"  # never tried
    DEFERRED = "deferred"  # tried, transient failure; waits for next_attempt_at
    DELIVERED = "delivered"  # final
    FAILED = "failed"  # final: permanent failure or expired (a bounce is due)

    @property
    def is_final(self) -> bool:
        return self in (RecipientState.DELIVERED, RecipientState.FAILED)


class MessageStatus(StrEnum):
    ACTIVE = "active"
    HELD = "held"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    index: int
    recipient: Recipient
    domain: str  # the routing key: A-label, lowercase
    state: RecipientState
    attempts: int
    next_attempt_at: datetime | None  # None once final
    last_attempt_at: datetime | None
    last_reply: str | None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """Everything the queue knows of one message, body aside (``read_body``)."""

    id: QueueId
    envelope: Envelope
    status: MessageStatus
    arrived_at: datetime
    size: int  # octets of the stored body
    body_sha256: str
    has_body: bool  # False once retention purged the body of a done message
    done_at: datetime | None
    recipients: tuple[RecipientRecord, ...]

    @property
    def attempts(self) -> int:
        return max((r.attempts for r in self.recipients), default=0)

    @property
    def next_attempt_at(self) -> datetime | None:
        due = [r.next_attempt_at for r in self.recipients if r.next_attempt_at is not None]
        return min(due, default=None)


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One line of ``list``."""

    id: QueueId
    status: MessageStatus
    arrived_at: datetime
    sender: str  # "" for the null sender <>
    size: int
    recipients: int
    pending: int  # recipients not yet final
    domains: tuple[str, ...]
    attempts: int
    next_attempt_at: datetime | None
    last_reply: str | None  # the most recent reply of any recipient


@dataclass(frozen=True, slots=True)
class ClaimedRecipient:
    message_id: QueueId
    index: int
    recipient: Recipient
    attempts: int  # attempts made before this one
    arrived_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """Due recipients of one destination domain, leased to the caller until ``lease_until``."""

    domain: str
    recipients: tuple[ClaimedRecipient, ...]
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The outcome of one delivery attempt for one recipient. ``reply`` is the remote (or local)
    reply as text, e.g. ``"451 4.4.1 connection refused"``; ``next_attempt_at`` is required for
    DEFERRED and ignored otherwise."""

    message_id: QueueId
    index: int
    state: RecipientState
    reply: str
    next_attempt_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.state is RecipientState.QUEUED:
            raise ValueError("an attempt's outcome is delivered, deferred or failed")
        if self.state is RecipientState.DEFERRED and self.next_attempt_at is None:
            raise ValueError("a deferred recipient needs next_attempt_at")


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which messages an operation applies to; every field set must match. ``QueueFilter()`` is all.
    ``domain`` matches messages having a recipient at that domain; ``error`` is a case-insensitive
    substring of any recipient's last reply; ``sender`` is the envelope sender ("" for ``<>``)."""

    status: MessageStatus | None = None
    domain: str | None = None
    sender: str | None = None
    arrived_before: datetime | None = None
    arrived_after: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for the tools and the dashboard. ``by_domain`` maps a destination domain to counts of
    its pending recipients per age bucket (``AGE_BUCKETS_MIN`` plus one "older" bucket)."""

    messages: dict[MessageStatus, int]
    recipients: dict[RecipientState, int]
    by_domain: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    messages: int  # done messages removed entirely
    bodies: int  # bodies of done messages dropped (the record stays)
