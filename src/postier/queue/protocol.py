"""The ``Queue`` interface every backend implements (SQLite now, PostgreSQL later).

Times are aware UTC datetimes; ``now`` arguments default to the backend's injected clock.
Errors: ``QueueFullError`` (out of space), ``UnknownMessageError`` (no such id), ``QueueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from postier.mail.envelope import Envelope
from postier.queue.model import (
    Claim,
    MessageRecord,
    MessageSummary,
    PurgeResult,
    QueueFilter,
    QueueId,
    QueueStats,
    RecipientResult,
)
from postier.spool import MessageBody

__all__ = ["DEFAULT_KEEP_BODY_S", "DEFAULT_KEEP_S", "Queue", "SharedSlots", "Target"]

Target = QueueId | QueueFilter
DEFAULT_KEEP_S = 7 * 86400.0
"""How long done (delivered / failed) messages stay listed: 7 days."""
DEFAULT_KEEP_BODY_S = 86400.0
"""How long the body of a done message is kept: 1 day."""


class Queue(Protocol):
    def new_id(self) -> QueueId:
        """A fresh id, for a Received header written before the message is queued."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue(
        self,
        envelope: Envelope,
        body: bytes | MessageBody,
        *,
        queue_id: str | None = None,
        held: bool = False,
    ) -> QueueId:
        """Store the message; durable when this returns. Every recipient is due at once — unless
        ``held`` (a quarantined message): then it is stored held, and nothing is delivered until
        ``release``. ``body`` may be a ``MessageBody`` whose octets are partly in a spool file (a large
        message): store it without reading it whole into memory when the backend can
        (``MessageBody.copy_to``, ``chunks``), else ``postier.spool.as_bytes``. The caller keeps and
        closes the spool."""
        ...

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        """Lease up to ``limit`` due recipients, grouped by destination domain."""
        ...

    async def unlease(self, items: Sequence[tuple[str, int]], until: datetime) -> int:
        """Make claimed recipients (message id, index) due again at ``until``, before their lease ends:
        the caller claimed more than it can start now. Recorded or released recipients are untouched."""
        ...

    async def renew(self, items: Sequence[tuple[str, int]], until: datetime) -> int:
        """Extend the caller's leases of claimed recipients (message id, index) whose delivery still
        runs to ``until``; a lease another node took over after it ran out stays with that node.
        Returns how many were renewed."""
        ...

    async def record(self, results: Sequence[RecipientResult], now: datetime | None = None) -> int:
        """Record attempt outcomes; outcomes for final or vanished recipients are ignored."""
        ...

    async def hold(self, target: Target) -> int: ...

    async def release(self, target: Target) -> int: ...

    async def retry(self, target: Target, now: datetime | None = None) -> int: ...

    async def delete(self, target: Target) -> int: ...

    async def get(self, queue_id: str) -> MessageRecord: ...

    async def read_body(self, queue_id: str) -> bytes: ...

    async def list_messages(
        self, where: QueueFilter | None = None, *, limit: int | None = ...
    ) -> list[MessageSummary]:
        """Matching messages, oldest first; at most ``limit`` (None: all)."""

    async def count_messages(self, where: QueueFilter | None = None) -> int:
        """How many messages match ``where``."""

    async def stats(self, now: datetime | None = None) -> QueueStats: ...

    async def purge(
        self, now: datetime | None = None, *, keep_s: float = ..., keep_body_s: float = ...
    ) -> PurgeResult: ...


@runtime_checkable
class SharedSlots(Protocol):
    """What a queue shared by several nodes (PostgreSQL) adds: connection slots per destination
    counted over every node, so a destination's limit holds for the whole cluster."""

    async def take_slot(self, key: str, limit: int) -> Any:
        """One of ``limit`` slots of destination ``key``; None when every one is taken."""
        ...

    async def give_slot(self, key: str, slot: Any) -> None: ...
