"""The durable queue: the ``Queue`` interface, its value types and the embedded SQLite backend.

``SqliteQueue(data_dir / "queue")`` → ``await q.open()`` → ``await q.enqueue(envelope, body)`` (durable
when it returns) → ``await q.close()``. See docs/queue.md for the layout and the durability argument.
"""

from postier.mail.errors import QueueError, QueueFullError, UnknownMessageError
from postier.queue.ids import is_queue_id
from postier.queue.model import (
    AGE_BUCKETS_MIN,
    Claim,
    ClaimedRecipient,
    MessageRecord,
    MessageStatus,
    MessageSummary,
    PurgeResult,
    QueueFilter,
    QueueId,
    QueueStats,
    RecipientRecord,
    RecipientResult,
    RecipientState,
)
from postier.queue.protocol import DEFAULT_KEEP_BODY_S, DEFAULT_KEEP_S, Queue, Target
from postier.queue.schedule import next_attempt
from postier.queue.sqlite import SqliteQueue

__all__ = [
    "AGE_BUCKETS_MIN",
    "DEFAULT_KEEP_BODY_S",
    "DEFAULT_KEEP_S",
    "Claim",
    "ClaimedRecipient",
    "MessageRecord",
    "MessageStatus",
    "MessageSummary",
    "PurgeResult",
    "Queue",
    "QueueError",
    "QueueFilter",
    "QueueFullError",
    "QueueId",
    "QueueStats",
    "RecipientRecord",
    "RecipientResult",
    "RecipientState",
    "SqliteQueue",
    "Target",
    "UnknownMessageError",
    "is_queue_id",
    "next_attempt",
]
