"""Read-only queue queries: one full record, the body, listings and qshape-like counts."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime

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
from postier.queue.sqlite.bodylog import BodyLog
from postier.queue.sqlite.sql import filter_clause

__all__ = ["count_messages", "get", "list_messages", "read_body", "stats"]

Conn = sqlite3.Connection


def get(conn: Conn, qid: QueueId) -> MessageRecord:
    row = conn.execute(
        "SELECT m.arrived_at, m.envelope, m.size, m.body_sha256, m.status, m.done_at,"
        " (SELECT COUNT(*) FROM bodies b WHERE b.message_id = m.id)"
        " + (SELECT COUNT(*) FROM body_refs f WHERE f.message_id = m.id)"
        " FROM messages m WHERE m.id = ?",
        (qid,),
    ).fetchone()
    if row is None:
        raise UnknownMessageError(f"no message {qid} in the queue")
    arrived, envelope, size, sha, status, done_at, has_body = row
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
        for idx, local, domain, key, notify, orcpt, state, attempts, next_at, last_at, reply in conn.execute(
            "SELECT idx, local_part, domain, domain_key, notify, orcpt, state, attempts, next_attempt_at,"
            " last_attempt_at, last_reply FROM recipients WHERE message_id = ? ORDER BY idx",
            (qid,),
        )
    )
    return MessageRecord(
        id=qid,
        envelope=decode_envelope(envelope, tuple(r.recipient for r in recipients)),
        status=MessageStatus(status),
        arrived_at=datetime.fromtimestamp(arrived, UTC),
        size=size,
        body_sha256=sha,
        has_body=bool(has_body),
        done_at=from_epoch(done_at),
        recipients=recipients,
    )


def read_body(conn: Conn, qid: QueueId, log: BodyLog | None = None) -> bytes:
    """The body exactly as stored (inline, or in the body log); checked against the hash taken when
    it was queued."""
    row = conn.execute(
        "SELECT m.body_sha256, b.data FROM messages m LEFT JOIN bodies b ON b.message_id = m.id"
        " WHERE m.id = ?",
        (qid,),
    ).fetchone()
    if row is None:
        raise UnknownMessageError(f"no message {qid} in the queue")
    sha, data = row
    if data is None and log is not None:
        data = log.read(conn, qid)
    if data is None:
        raise DamagedBodyError(f"the body of {qid} is missing (purged by retention, or lost)")
    body = bytes(data)
    if hashlib.sha256(body).hexdigest() != sha:
        raise DamagedBodyError(f"the body of {qid} does not match its hash: storage is damaged")
    return body


def list_messages(conn: Conn, where: QueueFilter, limit: int | None) -> list[MessageSummary]:
    """Messages matching ``where``, oldest first, with their recipient counts and latest reply; at most
    ``limit`` of them (None: all)."""
    clause, params = filter_clause(where)
    sql = f"SELECT m.id, m.status, m.arrived_at, m.sender, m.size FROM messages m WHERE {clause}"  # noqa: S608
    rows = conn.execute(sql + " ORDER BY m.id LIMIT ?", [*params, -1 if limit is None else limit]).fetchall()
    return [_summary(conn, *row) for row in rows]


def count_messages(conn: Conn, where: QueueFilter) -> int:
    """How many messages match ``where`` (what ``list_messages`` would return without a limit)."""
    clause, params = filter_clause(where)
    row = conn.execute(f"SELECT COUNT(*) FROM messages m WHERE {clause}", params).fetchone()  # noqa: S608
    return int(row[0])


def _summary(conn: Conn, qid: str, status: str, arrived: float, sender: str, size: int) -> MessageSummary:
    recipients = conn.execute(
        f"SELECT {SUMMARY_RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? ORDER BY idx",  # noqa: S608
        (qid,),
    ).fetchall()
    return summarize((qid, status, arrived, sender, size), recipients)


def stats(conn: Conn, now: float) -> QueueStats:
    """Counts of messages by status and recipients by state, and pending recipients of active and
    held messages by destination domain and age bucket (Postfix qshape's buckets)."""
    messages = {s: 0 for s in MessageStatus}
    for status, count in conn.execute("SELECT status, COUNT(*) FROM messages GROUP BY status"):
        messages[MessageStatus(status)] = count
    recipients = {s: 0 for s in RecipientState}
    for state, count in conn.execute("SELECT state, COUNT(*) FROM recipients GROUP BY state"):
        recipients[RecipientState(state)] = count
    by_domain: dict[str, list[int]] = {}
    rows = conn.execute(
        "SELECT r.domain_key, m.arrived_at FROM recipients r JOIN messages m ON m.id = r.message_id"
        " WHERE r.state IN ('queued', 'deferred')"
    )
    for domain, arrived in rows:
        counts = by_domain.setdefault(domain, [0] * (len(AGE_BUCKETS_MIN) + 1))
        counts[_bucket((now - arrived) / 60.0)] += 1
    ordered = sorted(by_domain.items(), key=lambda item: (-sum(item[1]), item[0]))
    return QueueStats(messages, recipients, {domain: tuple(counts) for domain, counts in ordered})


def _bucket(age_min: float) -> int:
    for i, bound in enumerate(AGE_BUCKETS_MIN):
        if age_min < bound:
            return i
    return len(AGE_BUCKETS_MIN)
