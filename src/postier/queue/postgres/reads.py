"""Read-only queries of the PostgreSQL queue: one record, a body, listings, counts (the whole
cluster's: every node's messages are in the one database; ``leases`` says which node holds what)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from postier.mail.errors import DamagedBodyError, UnknownMessageError
from postier.queue.codec import (
    SUMMARY_RECIPIENT_COLUMNS,
    decode_envelope,
    decode_recipient,
    from_epoch,
    summarize,
)
from postier.queue.model import (
    AGE_BUCKETS_MIN,
    MessageRecord,
    MessageStatus,
    MessageSummary,
    QueueFilter,
    QueueId,
    QueueStats,
    RecipientRecord,
    RecipientState,
)
from postier.queue.postgres.ops import filter_clause

__all__ = ["count_messages", "get", "leases", "list_messages", "read_body", "stats"]

_PENDING = "('queued', 'deferred')"


async def get(conn: Any, qid: str) -> MessageRecord:
    """The message and its recipients by one statement (one snapshot, one round trip: the
    scheduler asks this for every message it delivers)."""
    rows = await conn.fetch(
        "SELECT m.arrived_at, m.envelope, m.size, m.body_sha256, m.status, m.done_at,"
        " EXISTS (SELECT 1 FROM bodies b WHERE b.message_id = m.id),"
        " r.idx, r.local_part, r.domain, r.domain_key, r.notify, r.orcpt, r.state, r.attempts,"
        " r.next_attempt_at, r.last_attempt_at, r.last_reply"
        " FROM messages m LEFT JOIN recipients r ON r.message_id = m.id WHERE m.id = $1 ORDER BY r.idx",
        qid,
    )
    if not rows:
        raise UnknownMessageError(f"no message {qid} in the queue")
    arrived, envelope, size, sha, status, done_at, has_body = tuple(rows[0])[:7]
    recipients = tuple(
        RecipientRecord(
            index=idx,
            recipient=decode_recipient(local, domain, notify, orcpt),
            domain=key,
            state=RecipientState(state),
            attempts=attempts,
            next_attempt_at=from_epoch(next_at),
            last_attempt_at=from_epoch(last_at),
            last_reply=reply,
        )
        for idx, local, domain, key, notify, orcpt, state, attempts, next_at, last_at, reply in (
            tuple(row)[7:] for row in rows
        )
        if idx is not None
    )
    return MessageRecord(
        id=QueueId(qid),
        envelope=decode_envelope(envelope, tuple(r.recipient for r in recipients)),
        status=MessageStatus(status),
        arrived_at=datetime.fromtimestamp(arrived, UTC),
        size=size,
        body_sha256=sha,
        has_body=bool(has_body),
        done_at=from_epoch(done_at),
        recipients=recipients,
    )


async def read_body(conn: Any, qid: str) -> bytes:
    """The body exactly as stored, checked against the hash taken when it was queued."""
    row = await conn.fetchrow(
        "SELECT m.body_sha256, b.data FROM messages m LEFT JOIN bodies b ON b.message_id = m.id"
        " WHERE m.id = $1",
        qid,
    )
    if row is None:
        raise UnknownMessageError(f"no message {qid} in the queue")
    sha, data = row
    if data is None:
        raise DamagedBodyError(f"the body of {qid} is missing (purged by retention, or lost)")
    body = bytes(data)
    if hashlib.sha256(body).hexdigest() != sha:
        raise DamagedBodyError(f"the body of {qid} does not match its hash: storage is damaged")
    return body


async def list_messages(conn: Any, where: QueueFilter, limit: int | None) -> list[MessageSummary]:
    """Messages matching ``where``, oldest first, with their recipient counts and latest reply; at
    most ``limit`` of them (None: all)."""
    clause, params = filter_clause(where)
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        rows = await conn.fetch(
            f"SELECT m.id, m.status, m.arrived_at, m.sender, m.size FROM messages m WHERE {clause}"
            f" ORDER BY m.id LIMIT ${len(params) + 1}",
            *params,
            limit,  # LIMIT NULL: no limit
        )
        recipients = await conn.fetch(
            f"SELECT message_id, {SUMMARY_RECIPIENT_COLUMNS}"
            " FROM recipients WHERE message_id = ANY($1::text[]) ORDER BY message_id, idx",
            [r[0] for r in rows],
        )
    by_message: dict[str, list[Any]] = {}
    for r in recipients:
        by_message.setdefault(r[0], []).append(r[1:])
    return [summarize(tuple(row), by_message.get(row[0], [])) for row in rows]


async def count_messages(conn: Any, where: QueueFilter) -> int:
    """How many messages match ``where``."""
    clause, params = filter_clause(where)
    count: int = await conn.fetchval(f"SELECT count(*) FROM messages m WHERE {clause}", *params)
    return count


async def stats(conn: Any, now: float) -> QueueStats:
    """Counts of messages by status, recipients by state, and pending recipients by destination
    domain and age bucket (Postfix qshape's) — counted in the database, one row per domain and minute."""
    messages = {s: 0 for s in MessageStatus}
    recipients = {s: 0 for s in RecipientState}
    by_domain: dict[str, list[int]] = {}
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        for status, count in await conn.fetch("SELECT status, count(*) FROM messages GROUP BY status"):
            messages[MessageStatus(status)] = count
        for state, count in await conn.fetch("SELECT state, count(*) FROM recipients GROUP BY state"):
            recipients[RecipientState(state)] = count
        rows = await conn.fetch(
            "SELECT r.domain_key, floor(($1 - m.arrived_at) / 60.0)::bigint AS age, count(*)"
            " FROM recipients r JOIN messages m ON m.id = r.message_id"
            f" WHERE r.state IN {_PENDING} GROUP BY 1, 2",
            now,
        )
    for domain, age_min, count in rows:
        counts = by_domain.setdefault(domain, [0] * (len(AGE_BUCKETS_MIN) + 1))
        counts[_bucket(age_min)] += count
    ordered = sorted(by_domain.items(), key=lambda item: (-sum(item[1]), item[0]))
    return QueueStats(messages, recipients, {domain: tuple(counts) for domain, counts in ordered})


async def leases(conn: Any, now: float) -> dict[str, int]:
    """Recipients each node holds a live lease on (delivering now)."""
    rows = await conn.fetch(
        "SELECT lease_node, count(*) FROM recipients"
        f" WHERE state IN {_PENDING} AND lease_until > $1 AND lease_node IS NOT NULL GROUP BY 1",
        now,
    )
    return {node: count for node, count in rows}


def _bucket(age_min: float) -> int:
    for i, bound in enumerate(AGE_BUCKETS_MIN):
        if age_min < bound:
            return i
    return len(AGE_BUCKETS_MIN)
