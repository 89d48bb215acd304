"""The queue's operations as plain synchronous SQL on one DB-API connection.

The caller owns the transaction: ``SqliteQueue``'s writer thread runs many of these calls between
one ``BEGIN IMMEDIATE`` and one ``COMMIT`` (group commit). Times come in as epoch seconds. Reads
(get, list, stats, body) live in ``reads.py``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from postier.mail.envelope import Envelope
from postier.mail.errors import UnknownMessageError
from postier.queue.codec import decode_recipient, encode_envelope, encode_recipient, opt_epoch
from postier.queue.model import (
    Claim,
    ClaimedRecipient,
    MessageStatus,
    PurgeResult,
    QueueFilter,
    QueueId,
    RecipientResult,
    RecipientState,
)
from postier.queue.sqlite.bodylog import BodyLog
from postier.queue.sqlite.sql import filter_clause
from postier.spool import MessageBody

__all__ = [
    "Insert",
    "Target",
    "claim",
    "delete",
    "hold",
    "insert",
    "purge",
    "record",
    "release",
    "renew",
    "retry",
    "unlease",
]

Target = QueueId | QueueFilter
"""One message by id, or every message a filter matches (``QueueFilter()``: all)."""

Conn = sqlite3.Connection


def insert(conn: Conn, job: Insert) -> None:
    """Store one message, every recipient queued and due now. With the job's ``log``, a large body
    goes to the body log (appended after the row that refuses a duplicate id)."""
    qid, body, log = job.qid, job.body, job.log
    conn.execute(_INSERT_MESSAGE, job.row)
    if log is not None and log.wants(body):
        segment, start = log.append(body)
        try:
            conn.execute(_INSERT_REF, (qid, segment, start, len(body)))
            _insert_rows(conn, _INSERT_RECIPIENT, job.recipients)
        except BaseException:
            log.forget(segment, start)
            raise
        return
    conn.execute(_INSERT_BODY, (qid, body))
    _insert_rows(conn, _INSERT_RECIPIENT, job.recipients)


class Insert:
    """One enqueue as a writer job (``writer.py``): ``job(conn)`` stores the message alone, and
    ``Insert.many(conn, jobs)`` stores several at once — one multi-row ``INSERT`` per table and one
    ``pwritev`` of the large bodies for a whole group commit instead of five statements and a
    savepoint per message. With ``log``, a body the log wants goes there, the others inline.

    Why: each statement, each large write and each hash of more than 2 KiB drops the GIL in the
    writer thread, and taking it back means waiting for the busy event loop to let go. At 100 KiB
    that wait was most of the writer's time (8 ms per group commit of ten messages; its CPU time
    was a quarter of that), and the sessions waited for their 250 behind it. So the job does the
    least it can in the writer: the rows are built here, in the caller's thread (the event loop),
    and so is the body's SHA-256 — hashlib drops the GIL there too, which lets the writer run."""

    __slots__ = ("body", "log", "qid", "recipients", "row")

    def __init__(
        self,
        qid: QueueId,
        envelope: Envelope,
        body: bytes | MessageBody,
        now: float,
        log: BodyLog | None = None,
        *,
        held: bool = False,
    ) -> None:
        if isinstance(body, MessageBody) and (log is None or not log.wants(body)):
            body = body.read()  # stored inline: SQLite needs the bytes
        self.qid, self.body, self.log = qid, body, log
        sender = "" if envelope.sender is None else str(envelope.sender)
        # A spooled body's hash is taken before, off the loop (``SqliteQueue.enqueue``).
        digest = hashlib.sha256(body).hexdigest() if isinstance(body, bytes) else body.sha256()
        status = _HELD if held else _ACTIVE
        self.row = (qid, now, sender, encode_envelope(envelope), len(body), digest, status)
        self.recipients = [(qid, i, *encode_recipient(r), now) for i, r in enumerate(envelope.recipients)]

    def __call__(self, conn: Conn) -> None:
        insert(conn, self)

    @staticmethod
    def many(conn: Conn, jobs: Sequence[Insert]) -> list[None]:
        _insert_rows(conn, _INSERT_MESSAGE, [j.row for j in jobs])
        log = jobs[0].log  # one queue's writer runs these jobs: one body log
        logged: list[Insert] = []
        inline: list[Insert] = []
        for j in jobs:
            (logged if log is not None and log.wants(j.body) else inline).append(j)
        _insert_rows(conn, _INSERT_BODY, [(j.qid, j.body) for j in inline])
        recipients = [row for j in jobs for row in j.recipients]
        if log is None or not logged:
            _insert_rows(conn, _INSERT_RECIPIENT, recipients)
            return [None] * len(jobs)
        segment, starts = log.append_many([j.body for j in logged])
        try:
            refs = [(j.qid, segment, start, len(j.body)) for j, start in zip(logged, starts, strict=True)]
            _insert_rows(conn, _INSERT_REF, refs)
            _insert_rows(conn, _INSERT_RECIPIENT, recipients)
        except BaseException:
            log.forget(segment, starts[0])
            raise
        return [None] * len(jobs)


def _insert_rows(conn: Conn, insert: str, rows: Sequence[tuple[object, ...]]) -> None:
    """``rows`` by multi-row ``INSERT … VALUES (…), (…), …`` statements of up to ``_ROWS_PER_INSERT``
    rows: each statement is one ``sqlite3_step``, where ``executemany`` steps once per row — and
    the sqlite3 module drops the GIL around every step, which the writer thread must then wait to
    take back from the busy event loop (while holding the cross-process writer lock)."""
    if not rows:
        return
    width = len(rows[0])
    per = min(_ROWS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        conn.execute(_multi_row(insert, len(chunk)), list(itertools.chain.from_iterable(chunk)))


@functools.lru_cache(maxsize=256)
def _multi_row(insert: str, count: int) -> str:
    """``insert`` (one ``VALUES (…)`` row, at its end) with its row repeated ``count`` times."""
    head, sep, row = insert.rpartition(" VALUES ")
    return head + sep + ", ".join([row] * count)


_ROWS_PER_INSERT = 500


_INSERT_MESSAGE = (
    "INSERT INTO messages (id, arrived_at, sender, envelope, size, body_sha256, status, done_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)"
)
_INSERT_BODY = "INSERT INTO bodies (message_id, data) VALUES (?, ?)"
_INSERT_REF = "INSERT INTO body_refs (message_id, segment, start, length) VALUES (?, ?, ?, ?)"
_INSERT_RECIPIENT = (
    "INSERT INTO recipients (message_id, idx, local_part, domain, domain_key, notify, orcpt, state,"
    " attempts, next_attempt_at, lease_until, last_attempt_at, last_reply)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, NULL, NULL, NULL)"
)


_ACTIVE = MessageStatus.ACTIVE.value
_HELD = MessageStatus.HELD.value


def claim(conn: Conn, now: float, lease_s: float, limit: int) -> list[Claim]:
    """Lease up to ``limit`` due recipients of active messages, grouped by destination domain.

    A recipient is due when it is pending, its next attempt time has come and no live lease holds
    it. A worker that dies keeps its recipients only until the lease ends; then they are due again.
    """
    rows = conn.execute(
        "SELECT r.message_id, r.idx, r.local_part, r.domain, r.domain_key, r.notify, r.orcpt,"
        " r.attempts, m.arrived_at"
        " FROM recipients r JOIN messages m ON m.id = r.message_id"
        " WHERE r.state IN ('queued', 'deferred') AND m.status = 'active' AND r.next_attempt_at <= ?"
        " AND (r.lease_until IS NULL OR r.lease_until <= ?)"
        " ORDER BY r.next_attempt_at, r.message_id, r.idx LIMIT ?",
        (now, now, limit),
    ).fetchall()
    lease_until = now + lease_s
    conn.executemany(
        "UPDATE recipients SET lease_until = ? WHERE message_id = ? AND idx = ?",
        [(lease_until, row[0], row[1]) for row in rows],
    )
    groups: dict[str, list[ClaimedRecipient]] = {}
    for mid, idx, local, domain, key, notify, orcpt, attempts, arrived in rows:
        item = ClaimedRecipient(
            QueueId(mid), idx, decode_recipient(local, domain, notify, orcpt), attempts, _at(arrived)
        )
        groups.setdefault(key, []).append(item)
    until = _at(lease_until)
    return [Claim(key, tuple(items), until) for key, items in groups.items()]


def record(conn: Conn, results: Sequence[RecipientResult], now: float) -> int:
    """Apply attempt outcomes; returns how many were applied. An outcome for a recipient that is
    already final (or whose message was deleted) is ignored: a delivered recipient stays delivered."""
    applied = 0
    for result in results:
        next_at = opt_epoch(result.next_attempt_at) if result.state is RecipientState.DEFERRED else None
        cursor = conn.execute(
            "UPDATE recipients SET state = ?, attempts = attempts + 1, last_reply = ?,"
            " last_attempt_at = ?, next_attempt_at = ?, lease_until = NULL"
            " WHERE message_id = ? AND idx = ? AND state IN ('queued', 'deferred')",
            (result.state.value, result.reply, now, next_at, result.message_id, result.index),
        )
        applied += cursor.rowcount
    _finish(conn, {r.message_id for r in results}, now)
    return applied


def _finish(conn: Conn, ids: Iterable[str], now: float) -> None:
    """Mark done every message among ``ids`` whose recipients are all final."""
    for qid in ids:
        conn.execute(
            "UPDATE messages SET status = 'done', done_at = ? WHERE id = ? AND status <> 'done'"
            " AND NOT EXISTS (SELECT 1 FROM recipients"
            " WHERE message_id = ? AND state IN ('queued', 'deferred'))",
            (now, qid, qid),
        )


def select_ids(conn: Conn, target: Target) -> list[str]:
    """The ids a target names; an unknown single id raises UnknownMessageError."""
    if isinstance(target, QueueFilter):
        clause, params = filter_clause(target)
        sql = f"SELECT m.id FROM messages m WHERE {clause}"  # noqa: S608 (clause holds only placeholders)
        return [row[0] for row in conn.execute(sql, params)]
    if conn.execute("SELECT 1 FROM messages WHERE id = ?", (target,)).fetchone() is None:
        raise UnknownMessageError(f"no message {target} in the queue")
    return [target]


def _update_each(conn: Conn, sql: str, params: Iterable[tuple[object, ...]]) -> int:
    changed = 0
    for row in params:
        changed += conn.execute(sql, row).rowcount
    return changed


def hold(conn: Conn, target: Target) -> int:
    """Keep active messages from being claimed; returns how many changed."""
    ids = select_ids(conn, target)
    return _update_each(
        conn, "UPDATE messages SET status = 'held' WHERE id = ? AND status = 'active'", [(i,) for i in ids]
    )


def unlease(conn: Conn, items: tuple[tuple[str, int], ...], until: float) -> int:
    """Shorten the lease of claimed recipients the caller will not start now: they are due again at
    ``until`` (not at the end of the full lease), unless they were recorded meanwhile."""
    cur = conn.executemany(
        "UPDATE recipients SET lease_until = ? WHERE message_id = ? AND idx = ?"
        " AND state IN ('queued', 'deferred') AND lease_until > ?",
        [(until, mid, idx, until) for mid, idx in items],
    )
    return cur.rowcount


def renew(conn: Conn, items: tuple[tuple[str, int], ...], until: float) -> int:
    """Extend the lease of recipients whose delivery still runs to ``until`` (one process
    delivers from an SQLite queue, so every lease is the caller's)."""
    cur = conn.executemany(
        "UPDATE recipients SET lease_until = ? WHERE message_id = ? AND idx = ?"
        " AND state IN ('queued', 'deferred')",
        [(until, mid, idx) for mid, idx in items],
    )
    return cur.rowcount


def release(conn: Conn, target: Target) -> int:
    ids = select_ids(conn, target)
    return _update_each(
        conn, "UPDATE messages SET status = 'active' WHERE id = ? AND status = 'held'", [(i,) for i in ids]
    )


def retry(conn: Conn, target: Target, now: float) -> int:
    """Make every pending recipient due now (a held message stays held); returns recipients changed."""
    ids = select_ids(conn, target)
    return _update_each(
        conn,
        "UPDATE recipients SET next_attempt_at = ? WHERE message_id = ? AND state IN ('queued', 'deferred')",
        [(now, i) for i in ids],
    )


def delete(conn: Conn, target: Target, log: BodyLog | None = None) -> int:
    """Remove messages entirely (record, recipients, body); returns how many."""
    ids = select_ids(conn, target)
    _delete_ids(conn, ids, log)
    return len(ids)


def _delete_ids(conn: Conn, ids: Sequence[str], log: BodyLog | None) -> None:
    rows = [(i,) for i in ids]
    conn.executemany("DELETE FROM recipients WHERE message_id = ?", rows)
    _delete_bodies(conn, ids, log)
    conn.executemany("DELETE FROM messages WHERE id = ?", rows)


def _delete_bodies(conn: Conn, ids: Sequence[str], log: BodyLog | None) -> int:
    """Delete the bodies of ``ids``, inline or in the body log; returns how many there were."""
    gone, segments = 0, set[int]()
    for qid in ids:
        gone += conn.execute("DELETE FROM bodies WHERE message_id = ?", (qid,)).rowcount
        ref = conn.execute("SELECT segment FROM body_refs WHERE message_id = ?", (qid,)).fetchone()
        if ref is not None:
            conn.execute("DELETE FROM body_refs WHERE message_id = ?", (qid,))
            segments.add(ref[0])
            gone += 1
    if log is not None:
        log.doom_if_unused(conn, segments)
    return gone


def purge(
    conn: Conn, now: float, keep_s: float, keep_body_s: float, log: BodyLog | None = None
) -> PurgeResult:
    """Retention: drop done messages older than ``keep_s`` and done bodies older than ``keep_body_s``
    (measured from when the message became done)."""
    old = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM messages WHERE status = 'done' AND done_at < ?", (now - keep_s,)
        )
    ]
    _delete_ids(conn, old, log)
    bodies = [
        row[0]
        for row in conn.execute(
            "SELECT b.message_id FROM bodies b JOIN messages m ON m.id = b.message_id"
            " WHERE m.status = 'done' AND m.done_at < ?"
            " UNION SELECT f.message_id FROM body_refs f JOIN messages m ON m.id = f.message_id"
            " WHERE m.status = 'done' AND m.done_at < ?",
            (now - keep_body_s, now - keep_body_s),
        )
    ]
    return PurgeResult(messages=len(old), bodies=_delete_bodies(conn, bodies, log))


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)
