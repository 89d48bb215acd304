"""The PostgreSQL queue's changes after enqueue: claims, leases, outcomes, the tools' actions, purge.

Each function takes one asyncpg connection and runs its statements in one transaction. Times are
epoch seconds. Several nodes run these at once on the same rows; what keeps them apart:

- ``claim`` locks the due rows it picks with ``FOR UPDATE SKIP LOCKED``: two nodes claiming at
  once take disjoint recipients without waiting for each other, and a row leased by a claim that
  committed meanwhile fails the re-checked ``lease_until`` condition and is skipped.
- A lease carries the node (``lease_node``): ``renew`` and ``unlease`` touch only the caller's own
  leases, so a node whose lease ran out and was taken over by another cannot take it back.
- A claim also moves the recipient's next attempt time to the lease's end (a renewal or an unlease
  with it): due and leased are then never both true, so a claim's scan of the due index
  ``(next_attempt_at, message_id, idx)`` in order stops after ``limit`` rows instead of sorting every
  due row and passing over every leased one (measured: bench/pg_ceiling.py). If the node dies, that
  is the time the recipient comes due again.
- ``record`` applies an outcome whoever holds the lease (a late outcome is still the truth of that
  attempt) but never to a final recipient: delivered stays delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from postier.mail.errors import UnknownMessageError
from postier.queue.codec import decode_recipient, opt_epoch, to_epoch
from postier.queue.model import (
    Claim,
    ClaimedRecipient,
    PurgeResult,
    QueueFilter,
    QueueId,
    RecipientResult,
    RecipientState,
)
from postier.queue.protocol import Target

__all__ = [
    "claim",
    "delete",
    "filter_clause",
    "hold",
    "purge",
    "record_rows",
    "release",
    "renew",
    "retry",
    "select_ids",
    "unlease",
]

_PENDING = "('queued', 'deferred')"

_CLAIM = f"""
WITH due AS (
    SELECT r.message_id, r.idx, r.next_attempt_at, m.arrived_at
    FROM recipients r JOIN messages m ON m.id = r.message_id
    WHERE r.state IN {_PENDING} AND m.status = 'active' AND r.next_attempt_at <= $1
      AND (r.lease_until IS NULL OR r.lease_until <= $1)
    ORDER BY r.next_attempt_at, r.message_id, r.idx
    LIMIT $3
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE recipients r SET lease_until = $2, lease_node = $4, next_attempt_at = $2
FROM due WHERE r.message_id = due.message_id AND r.idx = due.idx
RETURNING r.message_id, r.idx, r.local_part, r.domain, r.domain_key, r.notify, r.orcpt, r.attempts,
          due.arrived_at, due.next_attempt_at
"""


async def claim(conn: Any, now: float, lease_s: float, limit: int, node: str) -> list[Claim]:
    """Lease up to ``limit`` due recipients of active messages to ``node``, grouped by domain."""
    lease_until = now + lease_s
    rows = await conn.fetch(_CLAIM, now, lease_until, limit, node)
    rows.sort(key=lambda r: (r[9], r[0], r[1]))
    groups: dict[str, list[ClaimedRecipient]] = {}
    for mid, idx, local, domain, key, notify, orcpt, attempts, arrived, _ in rows:
        item = ClaimedRecipient(
            QueueId(mid), idx, decode_recipient(local, domain, notify, orcpt), attempts, _at(arrived)
        )
        groups.setdefault(key, []).append(item)
    until = _at(lease_until)
    return [Claim(key, tuple(items), until) for key, items in groups.items()]


async def unlease(conn: Any, items: Sequence[tuple[str, int]], until: float, node: str) -> int:
    """Shorten this node's lease of ``items``: due again at ``until`` unless recorded meanwhile."""
    result: str = await conn.execute(
        "UPDATE recipients r SET lease_until = $3, next_attempt_at = $3"
        " FROM unnest($1::text[], $2::int[]) AS u(m, i)"
        f" WHERE r.message_id = u.m AND r.idx = u.i AND r.state IN {_PENDING}"
        " AND r.lease_until > $3 AND r.lease_node = $4",
        [m for m, _ in items],
        [i for _, i in items],
        until,
        node,
    )
    return _count(result)


async def renew(conn: Any, items: Sequence[tuple[str, int]], until: float, node: str) -> int:
    """Extend this node's leases of ``items`` (deliveries still running) to ``until``; a lease that
    another node took over meanwhile is left to it. Returns how many were renewed."""
    result: str = await conn.execute(
        "UPDATE recipients r SET lease_until = $3, next_attempt_at = greatest(r.next_attempt_at, $3)"
        " FROM unnest($1::text[], $2::int[]) AS u(m, i)"
        f" WHERE r.message_id = u.m AND r.idx = u.i AND r.state IN {_PENDING}"
        " AND r.lease_node = $4",
        [m for m, _ in items],
        [i for _, i in items],
        until,
        node,
    )
    return _count(result)


async def record_rows(conn: Any, results: Sequence[tuple[RecipientResult, float]]) -> set[tuple[str, int]]:
    """Apply attempt outcomes (each with its time) in the caller's transaction; the (message id,
    index) of those applied — not those final already or vanished. Messages whose recipients are
    all final become done. Rows are taken in key order, as every node does: no deadlock between them."""
    results = sorted(results, key=lambda item: (item[0].message_id, item[0].index))
    rows = await conn.fetch(
        "UPDATE recipients r SET state = u.s, attempts = r.attempts + 1, last_reply = u.reply,"
        " last_attempt_at = u.at, next_attempt_at = u.next, lease_until = NULL, lease_node = NULL"
        " FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::float8[], $6::float8[])"
        " AS u(m, i, s, reply, next, at)"
        f" WHERE r.message_id = u.m AND r.idx = u.i AND r.state IN {_PENDING}"
        " RETURNING r.message_id, r.idx",
        [r.message_id for r, _ in results],
        [r.index for r, _ in results],
        [r.state.value for r, _ in results],
        [r.reply for r, _ in results],
        [opt_epoch(r.next_attempt_at) if r.state is RecipientState.DEFERRED else None for r, _ in results],
        [at for _, at in results],
    )
    latest: dict[str, float] = {}
    for r, at in results:
        latest[r.message_id] = max(at, latest.get(r.message_id, at))
    await _finish(conn, latest)
    return {(row[0], row[1]) for row in rows}


async def _finish(conn: Any, at: dict[str, float]) -> None:
    """Mark done (at the time given) every message of ``at`` whose recipients are all final."""
    ids = sorted(at)
    await conn.execute(
        "UPDATE messages m SET status = 'done', done_at = u.at FROM unnest($1::text[], $2::float8[])"
        " AS u(id, at) WHERE m.id = u.id AND m.status <> 'done' AND NOT EXISTS (SELECT 1 FROM recipients r"
        f" WHERE r.message_id = m.id AND r.state IN {_PENDING})",
        ids,
        [at[i] for i in ids],
    )


def filter_clause(where: QueueFilter, first: int = 1) -> tuple[str, list[object]]:
    """``WHERE`` text over ``messages m`` with ``$first``… placeholders, and its parameters."""
    parts = ["TRUE"]
    params: list[object] = []

    def add(sql: str, value: object) -> None:
        params.append(value)
        parts.append(sql.replace("?", f"${first + len(params) - 1}"))

    if where.status is not None:
        add("m.status = ?", where.status.value)
    if where.domain is not None:
        sub = "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.domain_key = ?)"
        add(sub, where.domain.rstrip(".").lower())
    if where.sender is not None:
        add("lower(m.sender) = ?", where.sender.lower())
    if where.arrived_before is not None:
        add("m.arrived_at < ?", to_epoch(where.arrived_before))
    if where.arrived_after is not None:
        add("m.arrived_at >= ?", to_epoch(where.arrived_after))
    if where.error is not None:
        escaped = where.error.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
        sub = (
            "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id"
            " AND lower(r.last_reply) LIKE ? ESCAPE '!')"
        )
        add(sub, f"%{escaped}%")
    return " AND ".join(parts), params


async def select_ids(conn: Any, target: Target) -> list[str]:
    """The ids a target names; an unknown single id raises UnknownMessageError."""
    if isinstance(target, QueueFilter):
        clause, params = filter_clause(target)
        return [row[0] for row in await conn.fetch(f"SELECT m.id FROM messages m WHERE {clause}", *params)]
    if await conn.fetchval("SELECT 1 FROM messages WHERE id = $1", target) is None:
        raise UnknownMessageError(f"no message {target} in the queue")
    return [target]


async def _on_ids(conn: Any, target: Target, sql: str, *args: object) -> int:
    async with conn.transaction():
        ids = await select_ids(conn, target)
        return _count(await conn.execute(sql, ids, *args))


async def hold(conn: Any, target: Target) -> int:
    sql = "UPDATE messages SET status = 'held' WHERE id = ANY($1::text[]) AND status = 'active'"
    return await _on_ids(conn, target, sql)


async def release(conn: Any, target: Target) -> int:
    sql = "UPDATE messages SET status = 'active' WHERE id = ANY($1::text[]) AND status = 'held'"
    return await _on_ids(conn, target, sql)


async def retry(conn: Any, target: Target, now: float) -> int:
    """Every pending recipient due now (a held message stays held); returns recipients changed."""
    sql = (
        "UPDATE recipients SET next_attempt_at = $2 WHERE message_id = ANY($1::text[])"
        f" AND state IN {_PENDING}"
    )
    return await _on_ids(conn, target, sql, now)


async def delete(conn: Any, target: Target) -> int:
    """Remove messages entirely (record, recipients, body); returns how many."""
    async with conn.transaction():
        ids = await select_ids(conn, target)
        await _delete_ids(conn, ids)
    return len(ids)


async def _delete_ids(conn: Any, ids: list[str]) -> None:
    await conn.execute("DELETE FROM recipients WHERE message_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM bodies WHERE message_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM messages WHERE id = ANY($1::text[])", ids)


async def purge(conn: Any, now: float, keep_s: float, keep_body_s: float) -> PurgeResult:
    """Retention: done messages older than ``keep_s`` go, bodies of those older than ``keep_body_s``."""
    async with conn.transaction():
        old = [
            row[0]
            for row in await conn.fetch(
                "SELECT id FROM messages WHERE status = 'done' AND done_at < $1", now - keep_s
            )
        ]
        await _delete_ids(conn, old)
        bodies = await conn.execute(
            "DELETE FROM bodies b USING messages m WHERE m.id = b.message_id"
            " AND m.status = 'done' AND m.done_at < $1",
            now - keep_body_s,
        )
    return PurgeResult(messages=len(old), bodies=_count(bodies))


def _count(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)
