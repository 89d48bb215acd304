"""The schema and the SQL shared by the operations. Portable SQL only (it must also run on
PostgreSQL): TEXT / INTEGER / DOUBLE PRECISION / BLOB (bytea there), ``?`` placeholders (the
PostgreSQL backend rewrites them), no UPSERT, no RETURNING, no SQLite functions.
"""

from __future__ import annotations

from postier.queue.codec import to_epoch
from postier.queue.model import QueueFilter

__all__ = ["SCHEMA", "SCHEMA_VERSION", "filter_clause"]

SCHEMA_VERSION = 1

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY,
        arrived_at DOUBLE PRECISION NOT NULL,
        sender TEXT NOT NULL,
        envelope TEXT NOT NULL,
        size INTEGER NOT NULL,
        body_sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        done_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS bodies (
        message_id TEXT PRIMARY KEY,
        data BLOB NOT NULL
    )""",
    # Large bodies in the body log (sqlite backend, bodylog.py): where each one is.
    """CREATE TABLE IF NOT EXISTS body_refs (
        message_id TEXT PRIMARY KEY,
        segment INTEGER NOT NULL,
        start INTEGER NOT NULL,
        length INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS body_refs_segment ON body_refs (segment)",
    """CREATE TABLE IF NOT EXISTS recipients (
        message_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        local_part TEXT NOT NULL,
        domain TEXT NOT NULL,
        domain_key TEXT NOT NULL,
        notify TEXT,
        orcpt TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at DOUBLE PRECISION,
        lease_until DOUBLE PRECISION,
        last_attempt_at DOUBLE PRECISION,
        last_reply TEXT,
        PRIMARY KEY (message_id, idx)
    )""",
    "CREATE INDEX IF NOT EXISTS recipients_due ON recipients (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS recipients_domain ON recipients (domain_key)",
    "CREATE INDEX IF NOT EXISTS messages_status ON messages (status, done_at)",
)


def filter_clause(where: QueueFilter) -> tuple[str, list[object]]:
    """``WHERE`` text (over ``messages m``) and its parameters for a filter; "1 = 1" for all."""
    parts = ["1 = 1"]
    params: list[object] = []
    if where.status is not None:
        parts.append("m.status = ?")
        params.append(where.status.value)
    if where.domain is not None:
        parts.append("EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.domain_key = ?)")
        params.append(where.domain.rstrip(".").lower())
    if where.sender is not None:
        parts.append("LOWER(m.sender) = ?")
        params.append(where.sender.lower())
    if where.arrived_before is not None:
        parts.append("m.arrived_at < ?")
        params.append(to_epoch(where.arrived_before))
    if where.arrived_after is not None:
        parts.append("m.arrived_at >= ?")
        params.append(to_epoch(where.arrived_after))
    if where.error is not None:
        parts.append(
            "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id"
            " AND LOWER(r.last_reply) LIKE ? ESCAPE '!')"
        )
        escaped = where.error.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
        params.append(f"%{escaped}%")
    return " AND ".join(parts), params
