"""Queue operations shared by the ``postier queue`` tools and the HTTP API: list, show, retry, hold,
release, delete, stats — and the JSON shapes they answer with.

The tools open the store directly, next to a running server: SQLite in WAL mode lets them read while
the server writes, and ``busy_timeout`` makes a change wait for the server's current group commit
instead of failing. Each change is one transaction, so the server sees it whole or not at all. With
``[queue] backend = "postgres"`` (``--config``) they see the whole cluster's queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from postier.config import Config
from postier.mail.errors import QueueError, UnknownMessageError
from postier.queue import (
    AGE_BUCKETS_MIN,
    MessageRecord,
    MessageSummary,
    Queue,
    QueueId,
    QueueStats,
    SqliteQueue,
    Target,
    is_queue_id,
)
from postier.queue.configured import build_queue, read_password

__all__ = [
    "Action",
    "Shown",
    "act",
    "check_id",
    "migrate",
    "node_leases",
    "open_queue",
    "queue_dir",
    "record_to_json",
    "show",
    "stats_to_json",
    "summary_to_json",
]


class Action(StrEnum):
    RETRY = "retry"
    HOLD = "hold"
    RELEASE = "release"
    DELETE = "delete"


def queue_dir(data_dir: Path | str) -> Path:
    """Where the queue of a data directory lives."""
    return Path(data_dir) / "queue"


@asynccontextmanager
async def open_queue(data_dir: Path | str, config: Config | None = None) -> AsyncIterator[Queue]:
    """The existing queue (no new empty one: QueueError when there is none): the one ``config``
    names (``[queue] backend``; a PostgreSQL queue is the whole cluster's), or the SQLite queue
    under ``data_dir``."""
    if config is None:
        queue: Queue = SqliteQueue(queue_dir(data_dir), create=False, batch_max=64)
    else:
        queue = build_queue(config, data_dir=Path(data_dir), create=False, batch_max=64)
    await queue.open()
    try:
        yield queue
    finally:
        await queue.close()


async def migrate(config: Config) -> tuple[int, int]:
    """Bring the configured queue's schema to this version (PostgreSQL: ``postier queue migrate``);
    returns (version before, version after). SQLite queues are made and checked at open."""
    q = config.queue
    if q.backend != "postgres":
        raise QueueError("only a PostgreSQL queue is migrated (the SQLite queue is made at open)")
    from postier.queue.postgres.schema import migrate_database  # the optional extra

    password = read_password(q.password_file)
    try:
        return await migrate_database(q.dsn, q.schema, password=password, timeout_s=q.timeout_s)
    except RuntimeError as exc:
        raise QueueError(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise QueueError(f"cannot reach the queue database: {exc}") from None


async def node_leases(queue: Queue) -> dict[str, int] | None:
    """Recipients each node is delivering now (a cluster's queue); None for a one-node queue."""
    leases = getattr(queue, "leases", None)
    if leases is None:
        return None
    result: dict[str, int] = await leases()
    return result


def check_id(text: str) -> QueueId:
    """A queue id from user input; UnknownMessageError when it cannot be one."""
    candidate = text.strip().upper()
    if not is_queue_id(candidate):
        raise UnknownMessageError(f"{text!r} is not a queue id (16 letters and digits, as in 'queued as …')")
    return QueueId(candidate)


async def act(queue: Queue, action: Action, target: Target | str) -> int:
    """Apply one action; returns how many messages (recipients, for retry) changed."""
    if isinstance(target, str):
        target = check_id(target)
    if action is Action.RETRY:
        return await queue.retry(target)
    if action is Action.HOLD:
        return await queue.hold(target)
    if action is Action.RELEASE:
        return await queue.release(target)
    return await queue.delete(target)


@dataclass(frozen=True, slots=True)
class Shown:
    record: MessageRecord
    body: bytes | None  # the whole body with --body, else only the header section


async def show(queue: Queue, text_id: str, *, body: bool) -> Shown:
    qid = check_id(text_id)
    record = await queue.get(qid)
    if not record.has_body:
        return Shown(record, None)
    data = await queue.read_body(qid)
    if not body:
        end = data.find(b"\r\n\r\n")
        data = data if end < 0 else data[: end + 2]
    return Shown(record, data)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def summary_to_json(summary: MessageSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "status": summary.status.value,
        "arrived_at": _iso(summary.arrived_at),
        "sender": summary.sender,
        "size": summary.size,
        "recipients": summary.recipients,
        "pending": summary.pending,
        "domains": list(summary.domains),
        "attempts": summary.attempts,
        "next_attempt_at": _iso(summary.next_attempt_at),
        "last_reply": summary.last_reply,
    }


def record_to_json(record: MessageRecord) -> dict[str, Any]:
    env = record.envelope
    client = env.client
    return {
        "id": record.id,
        "status": record.status.value,
        "arrived_at": _iso(record.arrived_at),
        "done_at": _iso(record.done_at),
        "size": record.size,
        "body_sha256": record.body_sha256,
        "has_body": record.has_body,
        "sender": "" if env.sender is None else str(env.sender),
        "body_type": env.body.value,
        "smtputf8": env.smtputf8,
        "ret": None if env.ret is None else env.ret.value,
        "envid": env.envid,
        "declared_size": env.declared_size,
        "client": {
            "ip": client.ip,
            "port": client.port,
            "helo": client.helo,
            "protocol": client.protocol,
            "tls": client.tls,
            "auth_user": client.auth_user,
            "listener": client.listener,
            "mailauth": client.mailauth,
        },
        "recipients": [
            {
                "address": str(r.recipient.address),
                "domain": r.domain,
                "notify": None if r.recipient.notify is None else sorted(n.value for n in r.recipient.notify),
                "orcpt": r.recipient.orcpt,
                "state": r.state.value,
                "attempts": r.attempts,
                "next_attempt_at": _iso(r.next_attempt_at),
                "last_attempt_at": _iso(r.last_attempt_at),
                "last_reply": r.last_reply,
            }
            for r in record.recipients
        ],
    }


def stats_to_json(stats: QueueStats) -> dict[str, Any]:
    return {
        "messages": {k.value: v for k, v in stats.messages.items()},
        "recipients": {k.value: v for k, v in stats.recipients.items()},
        "age_buckets_min": list(AGE_BUCKETS_MIN),
        "by_domain": {domain: list(counts) for domain, counts in stats.by_domain.items()},
    }
